"""One module per `smsgw` sub-command.

Each module defines ``NAME`` (the sub-command), ``HELP`` (one line), ``add_arguments(parser)`` and
``main(args) -> int``. Heavy imports belong inside ``main`` so that ``smsgw --help`` stays fast. A
command that returns in milliseconds (``send``, ``status``) may say ``GC = False``: the cycle
collector then stays off while it runs (``appliance.cli.main``).
"""
