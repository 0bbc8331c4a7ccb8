-- One database per service that owns data; each service migrates its own schema (Alembic).
-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d).
CREATE DATABASE tollgate_credits;
CREATE DATABASE tollgate_keyvault;
CREATE DATABASE tollgate_health;
