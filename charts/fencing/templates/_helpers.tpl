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
app.kubernetes.io/name: {{ include "fencing.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: coordinator
{{- end }}

{{- define "fencing.labels" -}}
helm.sh/chart: {{ include "fencing.chart" . }}
{{ include "fencing.selectorLabels" . }}
{{ include "fencing.commonLabels" . }}
{{- end }}

{{- define "fencing.commonLabels" -}}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fencing
{{- end }}

{{/* The helm test Pod's labels: component test, so Services never select it. */}}
{{- define "fencing.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "fencing.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: test
{{- end }}

{{- define "fencing.testLabels" -}}
helm.sh/chart: {{ include "fencing.chart" . }}
{{ include "fencing.testSelectorLabels" . }}
{{ include "fencing.commonLabels" . }}
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

{{/*
fencing.validate fails the render with every problem of the coordinator's
values at once, each saying what to set. The sidecar templates check their
own values (_sidecar.tpl).
*/}}
{{- define "fencing.validate" -}}
{{- $c := .Values.coordinator }}
{{- $errs := list }}
{{- if not .Values.etcd.endpoints }}
{{- $errs = append $errs "etcd.endpoints is empty: list the client URLs of your etcd members, e.g. --set 'etcd.endpoints={https://etcd-a.example.com:2379,https://etcd-b.example.com:2379,https://etcd-w.example.com:2379}'" }}
{{- end }}
{{- if and .Values.etcd.tls.enabled (not .Values.etcd.tls.secretName) }}
{{- $errs = append $errs "etcd.tls.secretName is empty: name the Secret (in the release namespace) with the etcd client certificate (tls.crt, tls.key, ca.crt), or set etcd.tls.enabled=false for an etcd without client TLS" }}
{{- end }}
{{- if not .Values.auth.bindings }}
{{- $errs = append $errs "auth.bindings is empty: the coordinator refuses to start without them (no sidecar is ever served unauthenticated); bind each validator's ServiceAccount to its holder, e.g. --set 'auth.bindings[0].namespace=validators,auth.bindings[0].serviceAccount=besu-validator-1,auth.bindings[0].holder=region-a'" }}
{{- end }}
{{- $modes := .Values.operatorAuth.modes }}
{{- if not $modes }}
{{- $errs = append $errs "operatorAuth.modes is empty: list at least one of kubernetes, token, mtls" }}
{{- end }}
{{- if and (has "token" $modes) (not .Values.operatorAuth.tokenSecret.name) }}
{{- $errs = append $errs "operatorAuth.modes has token but operatorAuth.tokenSecret.name is empty: name the Secret holding the operator token" }}
{{- end }}
{{- if has "mtls" $modes }}
{{- if not .Values.operatorAuth.clientCA.secretName }}
{{- $errs = append $errs "operatorAuth.modes has mtls but operatorAuth.clientCA.secretName is empty: name the Secret holding the CA that signs operator client certificates" }}
{{- end }}
{{- if not $c.tls.enabled }}
{{- $errs = append $errs "operatorAuth.modes has mtls, which needs coordinator.tls.enabled=true" }}
{{- end }}
{{- end }}
{{- if $c.tls.enabled }}
{{- $source := include "fencing.tls.source" . }}
{{- if and (eq $source "secret") (not $c.tls.secretName) }}
{{- $errs = append $errs "coordinator.tls.certificate is secret but coordinator.tls.secretName is empty: name the kubernetes.io/tls Secret with the serving certificate" }}
{{- end }}
{{- if and $c.tls.caBundle.create (not (include "fencing.tls.chartOwnsCA" .)) (not $c.tls.caBundle.pem) }}
{{- $errs = append $errs "coordinator.tls.caBundle.pem is empty: the chart does not own the CA here (certificate=secret or certManager.issuerRef.name set), so give the PEM of the CA that signs the serving certificate, or set coordinator.tls.caBundle.create=false and publish it to the sidecars yourself" }}
{{- end }}
{{- end }}
{{- if and .Values.tests.enabled (not (has "kubernetes" $modes)) (not (has "token" $modes)) }}
{{- $errs = append $errs "tests.enabled needs operatorAuth.modes to include kubernetes or token (the test Pod has no client certificate); set tests.enabled=false" }}
{{- end }}
{{- if $errs }}
{{- fail (printf "\n\nThe fencing chart needs these values:\n  - %s\n" (join "\n  - " $errs)) }}
{{- end }}
{{- end }}

{{/*
fencing.tls.source resolves coordinator.tls.certificate: "auto" becomes
certManager when the cluster serves cert-manager.io/v1 (helm template: only
with --api-versions cert-manager.io/v1), otherwise generated.
*/}}
{{- define "fencing.tls.source" -}}
{{- $want := .Values.coordinator.tls.certificate }}
{{- if eq $want "auto" }}
{{- ternary "certManager" "generated" (.Capabilities.APIVersions.Has "cert-manager.io/v1") }}
{{- else }}
{{- $want }}
{{- end }}
{{- end }}

{{/* fencing.tls.chartOwnsCA is "true" when the chart generates (and keeps) the CA. */}}
{{- define "fencing.tls.chartOwnsCA" -}}
{{- $source := include "fencing.tls.source" . }}
{{- if or (eq $source "generated") (and (eq $source "certManager") (not .Values.coordinator.tls.certManager.issuerRef.name)) -}}
true
{{- end }}
{{- end }}

{{/* fencing.tls.secretName: the Secret the coordinator serves from. */}}
{{- define "fencing.tls.secretName" -}}
{{- .Values.coordinator.tls.secretName | default (printf "%s-tls" (include "fencing.fullname" .)) }}
{{- end }}

{{/* fencing.tls.dnsNames: the DNS names of the serving certificate, one per line. */}}
{{- define "fencing.tls.dnsNames" -}}
{{- $svc := include "fencing.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.coordinator.tls.clusterDomain) "localhost" }}
{{- join "\n" (concat $names .Values.coordinator.tls.extraDNSNames | uniq) }}
{{- end }}

{{/*
fencing.tls.caBundleNamespaces: where the CA bundle ConfigMap goes (the
release namespace, every namespace of auth.bindings, extraNamespaces), one
per line.
*/}}
{{- define "fencing.tls.caBundleNamespaces" -}}
{{- $ns := list .Release.Namespace }}
{{- range .Values.auth.bindings }}
{{- $ns = append $ns .namespace }}
{{- end }}
{{- join "\n" (concat $ns .Values.coordinator.tls.caBundle.extraNamespaces | uniq) }}
{{- end }}

{{/*
fencing.runbookURL: <base>#<alert name in lower case>, the anchor GitHub
gives the heading "## <AlertName>" in docs/runbook.md. Context: a dict with
"base" and "alert".
*/}}
{{- define "fencing.runbookURL" -}}
{{ printf "%s#%s" (.base | trimSuffix "/") (lower .alert) | quote }}
{{- end }}

{{/* fencing.portName: the coordinator's port name, https with TLS (service meshes read it). */}}
{{- define "fencing.portName" -}}
{{ ternary "https" "http" .Values.coordinator.tls.enabled }}
{{- end }}

{{/* fencing.serviceURL: the coordinator Service URL inside the cluster. */}}
{{- define "fencing.serviceURL" -}}
{{ ternary "https" "http" .Values.coordinator.tls.enabled }}://{{ include "fencing.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.coordinator.service.port }}
{{- end }}

{{/*
fencing.topologySpreadConstraints renders coordinator.topologySpreadConstraints,
adding a labelSelector for this release's coordinator Pods to items without one.
*/}}
{{- define "fencing.topologySpreadConstraints" -}}
{{- $out := list }}
{{- $selector := dict "matchLabels" (include "fencing.selectorLabels" . | fromYaml) }}
{{- range .Values.coordinator.topologySpreadConstraints }}
{{- $item := deepCopy . }}
{{- if not $item.labelSelector }}
{{- $_ := set $item "labelSelector" $selector }}
{{- end }}
{{- $out = append $out $item }}
{{- end }}
{{- toYaml $out }}
{{- end }}
