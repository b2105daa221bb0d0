-- Namespaces of standalone mode (sql/schema/00010_namespaces.sql): those with a row, and those
-- that exist only because reports are in them. The latter get a uid derived from cluster and
-- name (stable across reads) and the creation time of their oldest report.

-- name: ListNamespaces :many
SELECT n.name::text AS name, n.uid, n.created_at
FROM namespaces n
WHERE n.cluster = @cluster
UNION ALL
SELECT r.namespace::text AS name, md5(@cluster::text || '/' || r.namespace)::uuid::text AS uid,
       coalesce(min(r.created_at), now())::timestamptz AS created_at
FROM reports r
WHERE r.cluster = @cluster AND r.namespace <> ''
  AND NOT EXISTS (SELECT 1 FROM namespaces n2 WHERE n2.cluster = @cluster AND n2.name = r.namespace)
GROUP BY r.namespace
ORDER BY name;

-- name: GetNamespace :many
SELECT n.name::text AS name, n.uid, n.created_at
FROM namespaces n
WHERE n.cluster = @cluster AND n.name = @name
UNION ALL
SELECT r.namespace::text AS name, md5(@cluster::text || '/' || r.namespace)::uuid::text AS uid,
       coalesce(min(r.created_at), now())::timestamptz AS created_at
FROM reports r
WHERE r.cluster = @cluster AND r.namespace = @name
  AND NOT EXISTS (SELECT 1 FROM namespaces n2 WHERE n2.cluster = @cluster AND n2.name = @name)
GROUP BY r.namespace;

-- CreateNamespace adds a namespace unless it exists, with a row or with reports: no row
-- returned means it exists already.
-- name: CreateNamespace :many
INSERT INTO namespaces (cluster, name)
SELECT @cluster::text, @name::text
WHERE NOT EXISTS (SELECT 1 FROM reports r WHERE r.cluster = @cluster AND r.namespace = @name)
ON CONFLICT DO NOTHING
RETURNING name::text AS name, uid, created_at;

-- EnsureNamespace gives a namespace a row if it has none (the server does so for "default").
-- name: EnsureNamespace :exec
INSERT INTO namespaces (cluster, name) VALUES (@cluster, @name) ON CONFLICT DO NOTHING;

-- name: DeleteNamespace :exec
DELETE FROM namespaces WHERE cluster = @cluster AND name = @name;
