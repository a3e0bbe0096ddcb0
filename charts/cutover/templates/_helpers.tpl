{{/* Chart name, overridable. */}}
{{- define "cutover.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "cutover.fullname" -}}
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

{{- define "cutover.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cutover.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cutover.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cutover.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "cutover.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cutover.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cutover.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when the operator watches every namespace. */}}
{{- define "cutover.clusterWide" -}}
{{- if not .Values.watchNamespace }}true{{ end }}
{{- end }}

{{/* "true" when several replicas elect an active one through Kopf peering. */}}
{{- define "cutover.ha" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/*
RBAC rules for Migrations and the objects a Migration drives, shared by the ClusterRole
(cluster-wide) and the Role (single namespace). No wildcards: each verb is one the operator uses.
*/}}
{{- define "cutover.rules" -}}
# Migrations: Kopf watches them and keeps its bookkeeping in annotations (patch), the
# finalizer is added and removed by patch/update.
- apiGroups: ["cutover.io"]
  resources: ["migrations"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["cutover.io"]
  resources: ["migrations/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["cutover.io"]
  resources: ["migrations/finalizers"]
  verbs: ["update"]
# Gate templates: read from a watch at each run's preflight, never written.
- apiGroups: ["cutover.io"]
  resources: ["gatetemplates"]
  verbs: ["get", "list", "watch"]
# Blue and green: readiness from a watch, scaling by patch.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
# HorizontalPodAutoscalers of blue and green: a watch-fed index finds them before a run starts;
# green's minReplicas is raised to blue's size for the run and put back after
# (core/autoscaling.py).
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "patch"]
# The service router switches a Service's selector; the replicas router narrows it to one
# version's pods during the rollback window. spec.preview: a run creates its preview Service
# (selecting only green's pods) and deletes it when the run is over.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "patch", "create", "delete"]
# Data-side hooks and job gates run as Jobs; their logs are attached to the Migration's message.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Finding a hook's or job gate's pod, to read its log.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.rbac.readSecrets }}
# Only for the Secrets gates name: Prometheus credentials and CA bundles (prometheus.auth,
# prometheus.ca), web headers and CAs (web.headers[].valueFrom, web.ca), SQL DSNs (sql.dsn).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- if .Values.routers.gatewayapi.enabled }}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "patch", "update"]
{{- end }}
{{- if .Values.routers.istio.enabled }}
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "list", "watch", "patch", "update"]
{{- end }}
{{- if .Values.routers.nginx.enabled }}
# The nginx router creates a canary copy of the stable Ingress and deletes it at the end.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "patch", "update", "create", "delete"]
{{- end }}
{{- end }}
