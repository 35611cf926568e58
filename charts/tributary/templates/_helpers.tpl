{{/* Name of the chart. */}}
{{- define "tributary.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects. */}}
{{- define "tributary.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tributary.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tributary.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tributary.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tributary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tributary.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "tributary.labels" -}}
{{ include "tributary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The `job` label of each scrape the chart sets up: the rules and the dashboard select on it. */}}
{{- define "tributary.operatorJob" -}}
{{- include "tributary.fullname" . }}-metrics
{{- end -}}
{{- define "tributary.replicatorJob" -}}
{{- include "tributary.fullname" . }}-replicator
{{- end -}}
{{- define "tributary.checkpointSyncJob" -}}
{{- include "tributary.fullname" . }}-checkpoint-sync
{{- end -}}

{{/* Rules granted cluster-wide, or per namespace with `watchNamespaces`: the Secrets of
Kafka TLS/SASL (read by name only) and the active-region Leases of ConsumerGroupFailovers. */}}
{{- define "tributary.namespacedRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update", "patch"]
{{- end -}}
