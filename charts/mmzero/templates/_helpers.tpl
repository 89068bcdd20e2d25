{{/* Names and labels shared by every template. */}}

{{- define "mmzero.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mmzero.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mmzero.operatorSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "mmzero.renderSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: render
{{- end -}}

{{- define "mmzero.minioSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: minio
{{- end -}}

{{- define "mmzero.minioSecret" -}}
{{- .Values.minio.existingSecret | default (printf "%s-minio" (include "mmzero.fullname" .)) -}}
{{- end -}}

{{/* The rules the operator needs; bound cluster-wide or per watched namespace. */}}
{{- define "mmzero.operatorRules" -}}
- apiGroups: [mmzero.dev]
  resources: [mmzeroruns]
  verbs: [get, list, watch, patch]
- apiGroups: [mmzero.dev]
  resources: [mmzeroruns/status]
  verbs: [get, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, get, list, watch, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [create, list, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [create, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, get, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* Where stage pods push their final metrics: the given URL, the bundled gateway, or none. */}}
{{- define "mmzero.pushgatewayUrl" -}}
{{- $pg := .Values.metrics.pushgateway -}}
{{- if $pg.url -}}
{{- $pg.url -}}
{{- else if $pg.enabled -}}
{{- printf "http://%s-pushgateway.%s.svc:9091" (include "mmzero.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "mmzero.pushgatewaySelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: pushgateway
{{- end -}}
