-- The databases `python -m sqlgym_pipelines.local up` provisions (see local/provision.py).
CREATE DATABASE dagster;
CREATE DATABASE sqlgym;
CREATE DATABASE warehouse;
CREATE DATABASE neon_main;
