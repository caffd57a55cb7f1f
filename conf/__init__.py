"""lrexp's Hydra configs, installed as the package ``lrexp.conf`` (see pyproject.toml)."""
