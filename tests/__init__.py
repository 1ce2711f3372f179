"""The test suite. A package so that ``tests.*`` names this folder even where an installed
distribution ships a top-level ``tests`` package of its own (gmqtt does): a regular package
wins over a folder without ``__init__.py`` wherever either sits on ``sys.path``."""
