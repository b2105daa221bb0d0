{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "reports-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name: the release name, unless it lacks the chart name. */}}
{{- define "reports-server.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "reports-server.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reports-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reports-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "reports-server.labels" -}}
helm.sh/chart: {{ include "reports-server.chart" . }}
{{ include "reports-server.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "reports-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "reports-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The served API groups, keyed by their switch under .Values.groups. */}}
{{- define "reports-server.allGroups" -}}
wgpolicyk8s:
  group: wgpolicyk8s.io
  version: v1alpha2
  resources: [policyreports, clusterpolicyreports]
reportsKyverno:
  group: reports.kyverno.io
  version: v1
  resources: [ephemeralreports, clusterephemeralreports]
openreports:
  group: openreports.io
  version: v1alpha1
  resources: [reports, clusterreports]
{{- end }}

{{/* The enabled groups as a YAML list; fails when none is. */}}
{{- define "reports-server.groups" -}}
{{- $all := include "reports-server.allGroups" . | fromYaml }}
{{- $enabled := list }}
{{- range $key, $g := $all }}
{{- if index $.Values.groups $key }}
{{- $enabled = append $enabled $g }}
{{- end }}
{{- end }}
{{- if not $enabled }}
{{- fail "groups: enable at least one API group" }}
{{- end }}
{{- toYaml $enabled }}
{{- end }}

{{/* The Secret and key holding the database URL; fails on conflicting sources. */}}
{{- define "reports-server.databaseSecretName" -}}
{{- include "reports-server.validateDatabase" . }}
{{- if .Values.postgresql.enabled }}
{{- printf "%s-postgresql" (include "reports-server.fullname" .) }}
{{- else if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- printf "%s-database" (include "reports-server.fullname" .) }}
{{- end }}
{{- end }}

{{- define "reports-server.databaseSecretKey" -}}
{{- if .Values.postgresql.enabled }}url{{ else }}{{ .Values.database.secretKey }}{{ end }}
{{- end }}

{{- define "reports-server.validateDatabase" -}}
{{- $n := 0 }}
{{- if .Values.database.existingSecret }}{{ $n = add1 $n }}{{ end }}
{{- if .Values.database.url }}{{ $n = add1 $n }}{{ end }}
{{- if .Values.postgresql.enabled }}{{ $n = add1 $n }}{{ end }}
{{- if gt $n 1 }}
{{- fail "database: set only one of database.existingSecret, database.url and postgresql.enabled" }}
{{- end }}
{{- $m := .Values.database.migrations }}
{{- if and $m.existingSecret $m.url }}
{{- fail "database.migrations: set only one of database.migrations.existingSecret and database.migrations.url" }}
{{- end }}
{{- if and (or $m.existingSecret $m.url) .Values.postgresql.enabled }}
{{- fail "database.migrations applies to an external database with separate owner and app roles; the bundled PostgreSQL (postgresql.enabled) has one role" }}
{{- end }}
{{- end }}

{{/* Whether migrations run as the owner role in a hook Job (and the server with --migrate=false). */}}
{{- define "reports-server.splitRoles" -}}
{{- if or .Values.database.migrations.existingSecret .Values.database.migrations.url }}true{{ end }}
{{- end }}

{{/* The Secret holding the owner's URL. */}}
{{- define "reports-server.migrationsSecretName" -}}
{{- .Values.database.migrations.existingSecret | default (printf "%s-migrations" (include "reports-server.fullname" .)) }}
{{- end }}

{{/* The analytics group, served with whichever report groups are enabled. */}}
{{- define "reports-server.analyticsGroup" -}}
group: analytics.reports-server.io
version: v1alpha1
{{- end }}

{{/* The enabled report groups and the analytics group as a YAML list: one APIService each. */}}
{{- define "reports-server.apiServiceGroups" -}}
{{- $groups := include "reports-server.groups" . | fromYamlArray }}
{{- $groups = append $groups (include "reports-server.analyticsGroup" . | fromYaml) }}
{{- toYaml $groups }}
{{- end }}

{{/*
--api-groups: the enabled report groups, comma-separated, when not all of them are enabled
(the server's default is all); empty otherwise.
*/}}
{{- define "reports-server.apiGroupsFlag" -}}
{{- $enabled := include "reports-server.groups" . | fromYamlArray }}
{{- $all := include "reports-server.allGroups" . | fromYaml }}
{{- if lt (len $enabled) (len $all) }}
{{- $names := list }}
{{- range $enabled }}
{{- $names = append $names .group }}
{{- end }}
{{- join "," $names }}
{{- end }}
{{- end }}

{{/*
The serving certificate mode: "managed" (the server makes a certificate all replicas share
through a Secret and keeps APIServices carrying its CA), or, with static APIServices rendered
by the chart, "certManager", "secret" or "selfSigned" (made by the server at start, with
insecureSkipTLSVerify on the APIServices). Fails on inconsistent settings.
*/}}
{{- define "reports-server.tlsMode" -}}
{{- $a := .Values.apiService }}
{{- if $a.managed }}
{{- $conflicts := list }}
{{- if $a.certManager.enabled }}{{ $conflicts = append $conflicts "certManager.enabled" }}{{ end }}
{{- if $a.tls.existingSecret }}{{ $conflicts = append $conflicts "tls.existingSecret" }}{{ end }}
{{- if $a.tls.caBundle }}{{ $conflicts = append $conflicts "tls.caBundle" }}{{ end }}
{{- if $a.insecureSkipTLSVerify }}{{ $conflicts = append $conflicts "insecureSkipTLSVerify" }}{{ end }}
{{- with $conflicts }}
{{- fail (printf "apiService.managed=true: the server makes the serving certificate (in the Secret apiService.servingCertSecret) and puts its CA into the APIServices it manages, so apiService.%s cannot apply; unset it, or set apiService.managed=false for static APIServices rendered by the chart" (join ", apiService." .)) }}
{{- end }}
{{- if or (ne (int $a.groupPriorityMinimum) 1000) (ne (int $a.versionPriority) 100) }}
{{- fail "apiService.managed=true: the server registers its APIServices with groupPriorityMinimum 1000 and versionPriority 100 (a CRD's); apiService.groupPriorityMinimum and apiService.versionPriority apply only with apiService.managed=false" }}
{{- end }}
{{- print "managed" }}
{{- else }}
{{- if and $a.certManager.enabled $a.tls.existingSecret }}
{{- fail "apiService: set only one of certManager.enabled and tls.existingSecret" }}
{{- end }}
{{- if or $a.certManager.enabled $a.tls.existingSecret }}
{{- if $a.insecureSkipTLSVerify }}
{{- fail "apiService: set insecureSkipTLSVerify=false with certManager.enabled or tls.existingSecret (kube-apiserver refuses insecureSkipTLSVerify together with a caBundle)" }}
{{- end }}
{{- if and $a.tls.existingSecret (not $a.tls.caBundle) }}
{{- fail "apiService.tls.caBundle: the PEM of the CA that signed apiService.tls.existingSecret is required" }}
{{- end }}
{{- if $a.certManager.enabled }}certManager{{ else }}secret{{ end }}
{{- else }}
{{- if not $a.insecureSkipTLSVerify }}
{{- fail "apiService (managed=false): kube-apiserver cannot verify the server's self-signed certificate; set insecureSkipTLSVerify=true, certManager.enabled=true or tls.existingSecret, or apiService.managed=true" }}
{{- end }}
{{- print "selfSigned" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret holding the serving certificate all replicas share, in the managed mode. */}}
{{- define "reports-server.servingCertSecretName" -}}
{{- .Values.apiService.servingCertSecret | default (printf "%s-tls" (include "reports-server.fullname" .)) }}
{{- end }}

{{/* The Secret with the serving certificate, in the certManager and secret modes. */}}
{{- define "reports-server.tlsSecretName" -}}
{{- if .Values.apiService.tls.existingSecret }}
{{- .Values.apiService.tls.existingSecret }}
{{- else }}
{{- printf "%s-serving-cert" (include "reports-server.fullname" .) }}
{{- end }}
{{- end }}

{{/* The in-cluster DNS names of the server's Service. */}}
{{- define "reports-server.serviceDNSNames" -}}
{{- $svc := include "reports-server.fullname" . }}
{{- $ns := .Release.Namespace -}}
- {{ $svc }}
- {{ $svc }}.{{ $ns }}
- {{ $svc }}.{{ $ns }}.svc
- {{ $svc }}.{{ $ns }}.svc.cluster.local
{{- end }}
