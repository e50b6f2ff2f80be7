{{- define "besu-validator.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "besu-validator.selectorLabels" -}}
app.kubernetes.io/name: besu-validator
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{- define "besu-validator.labels" -}}
{{ include "besu-validator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}
