-- The extension's tables as flask-csvdirectory 0.1.0 created them on postgresql
-- (metadata.create_all, no migration version table). tests/test_migrations.py
-- upgrades a database made from this file. Do not edit: it is history.

CREATE TABLE csvdirectory_settings (
	id SERIAL NOT NULL,
	org VARCHAR(255) NOT NULL,
	enabled BOOLEAN NOT NULL,
	approval_threshold INTEGER NOT NULL,
	approval_percent FLOAT,
	intake_counter INTEGER NOT NULL,
	updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	updated_by VARCHAR(255),
	CONSTRAINT pk_csvdirectory_settings PRIMARY KEY (id),
	CONSTRAINT uq_csvdirectory_settings_org UNIQUE (org)
);

CREATE TABLE csvdirectory_runs (
	id VARCHAR(32) NOT NULL,
	org VARCHAR(255) NOT NULL,
	status VARCHAR(32) NOT NULL,
	phase VARCHAR(16) NOT NULL,
	channel VARCHAR(16) NOT NULL,
	uploaded_by_id VARCHAR(255),
	uploaded_by_name VARCHAR(255) NOT NULL,
	token_id INTEGER,
	decided_by_id VARCHAR(255),
	decided_by_name VARCHAR(255),
	decided_at TIMESTAMP WITHOUT TIME ZONE,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	started_at TIMESTAMP WITHOUT TIME ZONE,
	planned_at TIMESTAMP WITHOUT TIME ZONE,
	finished_at TIMESTAMP WITHOUT TIME ZONE,
	heartbeat_at TIMESTAMP WITHOUT TIME ZONE,
	timings JSON NOT NULL,
	users_filename VARCHAR(255) NOT NULL,
	employees_filename VARCHAR(255) NOT NULL,
	users_size INTEGER NOT NULL,
	employees_size INTEGER NOT NULL,
	users_rows INTEGER,
	employees_rows INTEGER,
	progress_done INTEGER NOT NULL,
	progress_total INTEGER NOT NULL,
	change_count INTEGER,
	change_counts JSON,
	fingerprint VARCHAR(64),
	directory_size INTEGER,
	threshold INTEGER,
	threshold_percent FLOAT,
	replans INTEGER NOT NULL,
	notice TEXT,
	error_reason TEXT,
	error_count INTEGER NOT NULL,
	row_errors JSON,
	job_id VARCHAR(128),
	worker VARCHAR(255),
	CONSTRAINT pk_csvdirectory_runs PRIMARY KEY (id)
);

CREATE INDEX ix_csvdirectory_runs_org_created ON csvdirectory_runs (org, created_at);

CREATE TABLE csvdirectory_tokens (
	id SERIAL NOT NULL,
	org VARCHAR(255) NOT NULL,
	name VARCHAR(255) NOT NULL,
	token_hash VARCHAR(64) NOT NULL,
	prefix VARCHAR(16) NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	created_by VARCHAR(255),
	last_used_at TIMESTAMP WITHOUT TIME ZONE,
	revoked_at TIMESTAMP WITHOUT TIME ZONE,
	CONSTRAINT pk_csvdirectory_tokens PRIMARY KEY (id),
	CONSTRAINT uq_csvdirectory_tokens_token_hash UNIQUE (token_hash)
);

CREATE INDEX ix_csvdirectory_tokens_org ON csvdirectory_tokens (org);

CREATE TABLE csvdirectory_idempotency (
	id SERIAL NOT NULL,
	org VARCHAR(255) NOT NULL,
	key VARCHAR(255) NOT NULL,
	request_hash VARCHAR(64) NOT NULL,
	status_code INTEGER NOT NULL,
	body JSON NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	CONSTRAINT pk_csvdirectory_idempotency PRIMARY KEY (id),
	CONSTRAINT uq_csvdirectory_idempotency_org_key UNIQUE (org, key)
);

CREATE TABLE csvdirectory_files (
	id SERIAL NOT NULL,
	org VARCHAR(255) NOT NULL,
	run_id VARCHAR(32) NOT NULL,
	role VARCHAR(16) NOT NULL,
	filename VARCHAR(255) NOT NULL,
	size INTEGER NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	purged_at TIMESTAMP WITHOUT TIME ZONE,
	ciphertext BYTEA,
	CONSTRAINT pk_csvdirectory_files PRIMARY KEY (id),
	CONSTRAINT uq_csvdirectory_files_run_role UNIQUE (run_id, role),
	CONSTRAINT fk_csvdirectory_files_run_id_csvdirectory_runs FOREIGN KEY(run_id) REFERENCES csvdirectory_runs (id) ON DELETE CASCADE
);
