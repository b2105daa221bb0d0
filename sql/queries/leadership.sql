-- Leadership (internal/db/elector.go): session-level advisory locks, one per kind of work and
-- scope, held by the leader's connection until it steps down or disconnects.

-- name: TryLead :one
SELECT pg_try_advisory_lock(@class::integer, hashtext(@scope::text)) AS locked;

-- name: WaitLead :exec
SELECT pg_advisory_lock(@class::integer, hashtext(@scope::text));

-- name: StepDown :one
SELECT pg_advisory_unlock(@class::integer, hashtext(@scope::text)) AS unlocked;
