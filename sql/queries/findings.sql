-- Queries of the read-only Kubernetes resources over the analytics tables (internal/apiserver/findings):
-- Finding and ClusterFinding are rows of analytics_results with their report row and outcome, FindingSummary
-- rows of the materialized summaries. Tables and views: sql/schema/00002_reporting.sql, 00003_findings.sql and
-- 00007_analytics_normalized.sql.
--
-- Every field selector is an optional predicate: a NULL parameter switches it off. The caller runs these
-- with plan_cache_mode = force_custom_plan (FindingsCustomPlans), so each execution is planned with its
-- actual parameters: the switched-off predicates fold away and the rest use the indexes, where a cached
-- generic plan would have to serve every combination with one plan.
-- A "=" selector on a missing value ("severity=") matches NULL, as field selectors treat a missing field
-- as ""; "!=" takes a list, so several of them on one field work.

-- name: FindingsCustomPlans :exec
SELECT set_config('plan_cache_mode', 'force_custom_plan', true);

-- name: ListFindings :many
-- One keyset page of results: those after (after_namespace, after_key, after_index) in the order
-- (report namespace, key, result index): analytics_reports_report_namespace_idx walks the reports from
-- the token on, analytics_results_report_idx finds the results of each. namespaced picks Finding
-- (reports with a namespace) or ClusterFinding (cluster-scoped reports, report_namespace '').
SELECT p.key, r.result_index, p.report_resource_version, p.report_api_group, p.report_api_version, p.report_kind,
       p.report_namespace, p.report_name, p.report_uid, o.source, o.policy, o.rule, o.category,
       coalesce(analytics_value(r.severity_code), '')::text AS severity,
       coalesce(analytics_value(r.result_code), '')::text AS result,
       analytics_finding(r.result_code)::boolean AS finding, o.scored, o.message, r."timestamp",
       p.resource_api_version, p.resource_kind, p.resource_namespace, p.resource_name, p.resource_uid, o.properties,
       r.score
FROM analytics_reports p
JOIN analytics_results r ON r.report_id = p.id
JOIN analytics_outcomes o ON o.id = r.outcome_id
WHERE p.cluster = @cluster
  AND (p.report_namespace <> '') = @namespaced::boolean
  -- (report_namespace, key, result_index) > the token's, with the part on the report a range of the index.
  AND (sqlc.narg(after_key)::text IS NULL
       OR ((p.report_namespace, p.key) >= (sqlc.narg(after_namespace)::text, sqlc.narg(after_key)::text)
           AND ((p.report_namespace, p.key) > (sqlc.narg(after_namespace)::text, sqlc.narg(after_key)::text)
                OR r.result_index > sqlc.narg(after_index)::integer)))
  AND (sqlc.narg(namespace)::text IS NULL OR p.report_namespace = sqlc.narg(namespace)::text)
  AND (sqlc.narg(not_namespace)::text[] IS NULL OR p.report_namespace <> ALL (sqlc.narg(not_namespace)::text[]))
  AND (sqlc.narg(name_kind)::text IS NULL
       OR (p.report_api_group = sqlc.narg(name_group)::text AND p.report_kind = sqlc.narg(name_kind)::text
           AND p.report_name = sqlc.narg(name_report)::text AND r.result_index = sqlc.narg(name_index)::integer))
  AND (sqlc.narg(finding)::boolean IS NULL OR analytics_finding(r.result_code) = sqlc.narg(finding)::boolean)
  -- Final reports only unless report.ephemeral=true asks for Kyverno's ephemeral ones.
  AND (p.report_api_group = 'reports.kyverno.io') = coalesce(sqlc.narg(ephemeral)::boolean, false)
  AND (sqlc.narg(severity)::text IS NULL OR analytics_value(r.severity_code) = sqlc.narg(severity)::text
       OR (sqlc.narg(severity)::text = '' AND r.severity_code IS NULL))
  AND (sqlc.narg(not_severity)::text[] IS NULL OR coalesce(analytics_value(r.severity_code), '') <> ALL (sqlc.narg(not_severity)::text[]))
  AND (sqlc.narg(result)::text IS NULL OR analytics_value(r.result_code) = sqlc.narg(result)::text
       OR (sqlc.narg(result)::text = '' AND r.result_code IS NULL))
  AND (sqlc.narg(not_result)::text[] IS NULL OR coalesce(analytics_value(r.result_code), '') <> ALL (sqlc.narg(not_result)::text[]))
  AND (sqlc.narg(policy)::text IS NULL OR o.policy = sqlc.narg(policy)::text
       OR (sqlc.narg(policy)::text = '' AND o.policy IS NULL))
  AND (sqlc.narg(not_policy)::text[] IS NULL OR coalesce(o.policy, '') <> ALL (sqlc.narg(not_policy)::text[]))
  AND (sqlc.narg(rule)::text IS NULL OR o.rule = sqlc.narg(rule)::text
       OR (sqlc.narg(rule)::text = '' AND o.rule IS NULL))
  AND (sqlc.narg(not_rule)::text[] IS NULL OR coalesce(o.rule, '') <> ALL (sqlc.narg(not_rule)::text[]))
  AND (sqlc.narg(source)::text IS NULL OR o.source = sqlc.narg(source)::text
       OR (sqlc.narg(source)::text = '' AND o.source IS NULL))
  AND (sqlc.narg(not_source)::text[] IS NULL OR coalesce(o.source, '') <> ALL (sqlc.narg(not_source)::text[]))
  AND (sqlc.narg(category)::text IS NULL OR o.category = sqlc.narg(category)::text
       OR (sqlc.narg(category)::text = '' AND o.category IS NULL))
  AND (sqlc.narg(not_category)::text[] IS NULL OR coalesce(o.category, '') <> ALL (sqlc.narg(not_category)::text[]))
  AND (sqlc.narg(subject_kind)::text IS NULL OR p.resource_kind = sqlc.narg(subject_kind)::text
       OR (sqlc.narg(subject_kind)::text = '' AND p.resource_kind IS NULL))
  AND (sqlc.narg(not_subject_kind)::text[] IS NULL OR coalesce(p.resource_kind, '') <> ALL (sqlc.narg(not_subject_kind)::text[]))
  AND (sqlc.narg(subject_namespace)::text IS NULL OR p.resource_namespace = sqlc.narg(subject_namespace)::text
       OR (sqlc.narg(subject_namespace)::text = '' AND p.resource_namespace IS NULL))
  AND (sqlc.narg(not_subject_namespace)::text[] IS NULL OR coalesce(p.resource_namespace, '') <> ALL (sqlc.narg(not_subject_namespace)::text[]))
  AND (sqlc.narg(subject_name)::text IS NULL OR p.resource_name = sqlc.narg(subject_name)::text
       OR (sqlc.narg(subject_name)::text = '' AND p.resource_name IS NULL))
  AND (sqlc.narg(not_subject_name)::text[] IS NULL OR coalesce(p.resource_name, '') <> ALL (sqlc.narg(not_subject_name)::text[]))
  AND (sqlc.narg(report_name)::text IS NULL OR p.report_name = sqlc.narg(report_name)::text
       OR (sqlc.narg(report_name)::text = '' AND p.report_name IS NULL))
  AND (sqlc.narg(not_report_name)::text[] IS NULL OR coalesce(p.report_name, '') <> ALL (sqlc.narg(not_report_name)::text[]))
ORDER BY p.report_namespace, p.key, r.result_index
LIMIT @row_limit;

-- name: GetFinding :one
-- One result by its report's namespace, storage key and position.
SELECT p.key, r.result_index, p.report_resource_version, p.report_api_group, p.report_api_version, p.report_kind,
       p.report_namespace, p.report_name, p.report_uid, o.source, o.policy, o.rule, o.category,
       coalesce(analytics_value(r.severity_code), '')::text AS severity,
       coalesce(analytics_value(r.result_code), '')::text AS result,
       analytics_finding(r.result_code)::boolean AS finding, o.scored, o.message, r."timestamp",
       p.resource_api_version, p.resource_kind, p.resource_namespace, p.resource_name, p.resource_uid, o.properties,
       r.score
FROM analytics_reports p
JOIN analytics_results r ON r.report_id = p.id
JOIN analytics_outcomes o ON o.id = r.outcome_id
WHERE p.cluster = @cluster AND p.report_namespace = @namespace AND p.key = @key AND r.result_index = @result_index;

-- The four summaries, each with its refresh time and generation (analytics_refreshes). Pages follow the
-- unique index of each materialized view; name is analytics_summary_name of the row's key.

-- name: ListClusterSummary :many
SELECT analytics_summary_name('Cluster', '[]'::jsonb)::text AS name,
       s.results, s.pass, s.fail, s.warn, s.error, s.skip, s.findings, s.critical, s.high, s.medium, s.low, s.info,
       f.refreshed_at, f.generation
FROM analytics_cluster_summary s
CROSS JOIN analytics_refreshes f
WHERE s.cluster = @cluster AND f.name = 'cluster_summary'
  AND (sqlc.narg(name)::text IS NULL OR analytics_summary_name('Cluster', '[]'::jsonb) = sqlc.narg(name)::text)
  AND (sqlc.narg(not_name)::text[] IS NULL OR analytics_summary_name('Cluster', '[]'::jsonb) <> ALL (sqlc.narg(not_name)::text[]));

-- name: ListNamespaceSummary :many
SELECT analytics_summary_name('Namespace', jsonb_build_array(s.namespace))::text AS name, s.namespace,
       s.results, s.pass, s.fail, s.warn, s.error, s.skip, s.findings, s.critical, s.high, s.medium, s.low, s.info,
       f.refreshed_at, f.generation
FROM analytics_namespace_summary s
CROSS JOIN analytics_refreshes f
WHERE s.cluster = @cluster AND f.name = 'namespace_summary'
  AND (sqlc.narg(after_namespace)::text IS NULL OR s.namespace > sqlc.narg(after_namespace)::text)
  AND (sqlc.narg(namespace)::text IS NULL OR s.namespace = sqlc.narg(namespace)::text)
  AND (sqlc.narg(not_namespace)::text[] IS NULL OR s.namespace <> ALL (sqlc.narg(not_namespace)::text[]))
  AND (sqlc.narg(name)::text IS NULL OR analytics_summary_name('Namespace', jsonb_build_array(s.namespace)) = sqlc.narg(name)::text)
  AND (sqlc.narg(not_name)::text[] IS NULL OR analytics_summary_name('Namespace', jsonb_build_array(s.namespace)) <> ALL (sqlc.narg(not_name)::text[]))
ORDER BY s.namespace
LIMIT @row_limit;

-- name: ListPolicySummary :many
SELECT analytics_summary_name('Policy', jsonb_build_array(s.source, s.policy))::text AS name, s.source, s.policy,
       s.results, s.pass, s.fail, s.warn, s.error, s.skip, s.findings, s.critical, s.high, s.medium, s.low, s.info,
       f.refreshed_at, f.generation
FROM analytics_policy_summary s
CROSS JOIN analytics_refreshes f
WHERE s.cluster = @cluster AND f.name = 'policy_summary'
  AND (sqlc.narg(after_source)::text IS NULL
       OR (s.source, s.policy) > (sqlc.narg(after_source)::text, sqlc.narg(after_policy)::text))
  AND (sqlc.narg(source)::text IS NULL OR s.source = sqlc.narg(source)::text)
  AND (sqlc.narg(not_source)::text[] IS NULL OR s.source <> ALL (sqlc.narg(not_source)::text[]))
  AND (sqlc.narg(policy)::text IS NULL OR s.policy = sqlc.narg(policy)::text)
  AND (sqlc.narg(not_policy)::text[] IS NULL OR s.policy <> ALL (sqlc.narg(not_policy)::text[]))
  AND (sqlc.narg(name)::text IS NULL OR analytics_summary_name('Policy', jsonb_build_array(s.source, s.policy)) = sqlc.narg(name)::text)
  AND (sqlc.narg(not_name)::text[] IS NULL OR analytics_summary_name('Policy', jsonb_build_array(s.source, s.policy)) <> ALL (sqlc.narg(not_name)::text[]))
ORDER BY s.source, s.policy
LIMIT @row_limit;

-- name: ListResourceSummary :many
SELECT analytics_summary_name('Resource', jsonb_build_array(s.namespace, s.resource_kind, s.resource_name))::text AS name,
       s.namespace, s.resource_kind, s.resource_name,
       s.results, s.pass, s.fail, s.warn, s.error, s.skip, s.findings, s.critical, s.high, s.medium, s.low, s.info,
       f.refreshed_at, f.generation
FROM analytics_resource_summary s
CROSS JOIN analytics_refreshes f
WHERE s.cluster = @cluster AND f.name = 'resource_summary'
  AND (sqlc.narg(after_namespace)::text IS NULL
       OR (s.namespace, s.resource_kind, s.resource_name)
          > (sqlc.narg(after_namespace)::text, sqlc.narg(after_kind)::text, sqlc.narg(after_name)::text))
  AND (sqlc.narg(namespace)::text IS NULL OR s.namespace = sqlc.narg(namespace)::text)
  AND (sqlc.narg(not_namespace)::text[] IS NULL OR s.namespace <> ALL (sqlc.narg(not_namespace)::text[]))
  AND (sqlc.narg(subject_kind)::text IS NULL OR s.resource_kind = sqlc.narg(subject_kind)::text)
  AND (sqlc.narg(not_subject_kind)::text[] IS NULL OR s.resource_kind <> ALL (sqlc.narg(not_subject_kind)::text[]))
  AND (sqlc.narg(subject_name)::text IS NULL OR s.resource_name = sqlc.narg(subject_name)::text)
  AND (sqlc.narg(not_subject_name)::text[] IS NULL OR s.resource_name <> ALL (sqlc.narg(not_subject_name)::text[]))
  AND (sqlc.narg(name)::text IS NULL
       OR analytics_summary_name('Resource', jsonb_build_array(s.namespace, s.resource_kind, s.resource_name)) = sqlc.narg(name)::text)
  AND (sqlc.narg(not_name)::text[] IS NULL
       OR analytics_summary_name('Resource', jsonb_build_array(s.namespace, s.resource_kind, s.resource_name)) <> ALL (sqlc.narg(not_name)::text[]))
ORDER BY s.namespace, s.resource_kind, s.resource_name
LIMIT @row_limit;
