"""Thin callbacks that put lrexp inside other people's training loops: each writes a run directory with
lrexp.recorder.Recorder (so ``python -m lrexp.report`` compares its runs) and can drive a schedule built
with lrexp.schedule.build. Each is an optional extra, imported only by whoever uses it:

- transformers: a ``TrainerCallback`` for Hugging Face's ``Trainer`` (``pip install 'lrexp[trainer]'``);
- lightning: a ``Callback`` for Lightning's ``Trainer`` (``pip install 'lrexp[lightning]'``).
"""
