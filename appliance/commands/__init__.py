"""One module per `smsgw` sub-command.

Each module defines ``NAME`` (the sub-command), ``HELP`` (one line), ``add_arguments(parser)`` and
``main(args) -> int``. Heavy imports belong inside ``main`` so that ``smsgw --help`` stays fast.
"""
