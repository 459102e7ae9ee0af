"""Pure screen functions per flow: sample data in, ``Screen`` out; no bot, no I/O."""
