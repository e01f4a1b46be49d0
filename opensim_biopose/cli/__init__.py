"""The ``opensim-biopose`` console script: one module per subcommand."""
