"""`studio` subcommands that belong to one layer each (synth, review, train).

Each module defines one click command and imports its heavy modules inside the command, so that
`studio --help` stays fast. `studio.cli` registers them.
"""
