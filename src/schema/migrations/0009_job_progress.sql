-- strata migration 9: a running job's latest progress line, written by the
-- server that runs it (at most once a second), for the API and the dashboard.
ALTER TABLE strata.jobs
    ADD COLUMN progress text,
    ADD COLUMN progress_at timestamptz;
