"""Studies: analyses that read many sweeps' run directories at once and answer a question about
schedules in general rather than about one sweep (like every report, they never import the runner).

- replication: seven published findings about LR schedules, each tested on its sweep preset's runs.
"""
