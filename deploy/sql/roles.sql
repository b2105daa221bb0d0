-- Database roles for a least-privilege installation of reports-server (docs/operations.md,
-- "Database roles"). Run once, as a superuser or a role with CREATEROLE and CREATEDB, before the
-- first migration; running it again changes nothing:
--
--   psql -v owner=reports_owner -v app=reports_app -v database=reports -f deploy/sql/roles.sql
--
-- (the three variables are optional: these are their defaults). It makes
--   * :owner     LOGIN, owns the database and every object in it: it runs the migrations
--                (`reports-server migrate up`, the Helm chart's migration Job);
--   * :app       LOGIN, what the server logs in as (`serve --migrate=false`): a member of
--                reports_server and nothing else, so it reads and writes the server's tables
--                and owns nothing (no DDL, no migrations);
--   * reports_server, reports_reader  NOLOGIN group roles whose privileges the migrations grant
--                (00011 and 00002): the server's DML, and SELECT on the published views.
--                Analysts and BI tools log in as roles granted reports_reader
--                (deploy/grafana/datasource.yaml).
-- It sets no passwords. Set them with \password in psql (never on a command line or in a log),
-- or use client certificates (docs/operations.md, "TLS").
\set ON_ERROR_STOP on
\if :{?owner}
\else
\set owner reports_owner
\endif
\if :{?app}
\else
\set app reports_app
\endif
\if :{?database}
\else
\set database reports
\endif

SELECT format('CREATE ROLE %I NOLOGIN', r)
FROM unnest(ARRAY['reports_server', 'reports_reader']) AS r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)
\gexec

SELECT format('CREATE ROLE %I LOGIN', r)
FROM unnest(ARRAY[:'owner', :'app']) AS r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)
\gexec

GRANT reports_server TO :"app";

SELECT format('CREATE DATABASE %I OWNER %I ENCODING ''UTF8'' TEMPLATE template0', :'database', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database')
\gexec

-- Only the roles above connect; nobody but the owner creates anything in it.
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO :"owner", :"app", reports_reader;
