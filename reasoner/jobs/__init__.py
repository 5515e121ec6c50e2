"""The entry points (jobs) and what only they share: the console commands (`cli`), the RL run
(`rl`), SFT (`sft`), rejection sampling (`rejection`), multi-stage recipes (`recipe`), the job
preamble and cold start (`common`) and the held-out evaluation (`heldout`). The only part of
``reasoner`` that imports ``eval``; nothing in the library imports from here."""
