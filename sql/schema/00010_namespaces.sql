-- Namespaces of standalone mode. Behind kube-apiserver namespaces are kube-apiserver's; a
-- standalone server serves core/v1 namespaces itself so kubectl behaves as against a cluster.
-- A namespace exists when it has a row here (`kubectl create namespace`, or "default", which the
-- server ensures at start) or when reports are in it (created on first use: those have no row
-- and are derived from `reports`, see ListNamespaces in sql/queries/namespaces.sql).

-- +goose Up
CREATE TABLE namespaces (
    cluster    text        NOT NULL,
    name       text        COLLATE "C" NOT NULL,
    uid        text        NOT NULL DEFAULT gen_random_uuid()::text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, name)
);

-- +goose Down
DROP TABLE namespaces;
