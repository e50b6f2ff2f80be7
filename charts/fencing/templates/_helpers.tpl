{{/*
fencing.defaultTag is the image tag used when no tag is set. It equals the
chart's appVersion (a test checks); it is a literal because the sidecar
templates are also rendered from other charts, where .Chart is theirs.
*/}}
{{- define "fencing.defaultTag" -}}
0.1.0
{{- end }}

{{- define "fencing.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fencing.fullname" -}}
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

{{- define "fencing.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fencing.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fencing.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: coordinator
{{- end }}

{{- define "fencing.labels" -}}
helm.sh/chart: {{ include "fencing.chart" . }}
{{ include "fencing.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fencing
{{- end }}

{{- define "fencing.serviceAccountName" -}}
{{- if .Values.coordinator.serviceAccount.create }}
{{- default (include "fencing.fullname" .) .Values.coordinator.serviceAccount.name }}
{{- else }}
{{- required "coordinator.serviceAccount.name is required when coordinator.serviceAccount.create is false" .Values.coordinator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
fencing.image renders repository:tag or repository@digest. Context: a dict
with "image" (the chart's image values) and optional "override" (a
{repository, tag} whose non-empty fields win).
*/}}
{{- define "fencing.image" -}}
{{- $img := .image }}
{{- $ovr := .override | default dict }}
{{- $repo := $ovr.repository | default $img.repository }}
{{- $tag := $ovr.tag | default $img.tag | default (include "fencing.defaultTag" .) }}
{{- if and $img.digest (not $ovr.tag) (not $ovr.repository) }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/*
fencing.authBindings renders auth.bindings in the inline form the
coordinator's --auth-bindings reads:
<namespace>/<serviceaccount>=<holder>[:<validator>,...];...
*/}}
{{- define "fencing.authBindings" -}}
{{- $out := list }}
{{- range .Values.auth.bindings }}
{{- $b := printf "%s/%s=%s" .namespace .serviceAccount .holder }}
{{- if .validators }}
{{- $b = printf "%s:%s" $b (join "," .validators) }}
{{- end }}
{{- $out = append $out $b }}
{{- end }}
{{- join ";" $out }}
{{- end }}

{{/* Security context of every container this chart renders. */}}
{{- define "fencing.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
