{{/*
Named templates that inject fence-sidecar into a validator Pod. A validator
chart lists this chart as a dependency (docs/kubernetes.md) and includes them
with the fencing chart's values as the context, .Values.fencing from the parent:

  metadata:
    labels:
      {{- include "fencing.sidecar.podLabels" .Values.fencing | nindent 8 }}
  spec:
    securityContext:
      fsGroup: 65532            # lets the sidecar (uid 65532) read its 0400 key
    containers:
      - name: validator
        ...
      {{- include "fencing.sidecar" .Values.fencing | nindent 6 }}
    volumes:
      {{- include "fencing.sidecar.volumes" .Values.fencing | nindent 6 }}
  volumeClaimTemplates:
    {{- include "fencing.sidecar.volumeClaimTemplate" .Values.fencing | nindent 4 }}

The validator container reaches the signer at
{{ include "fencing.sidecar.signerURL" .Values.fencing }}.
*/}}

{{/* fencing.sidecar: the sidecar container, one list item. */}}
{{- define "fencing.sidecar" -}}
{{- $s := .sidecar }}
{{- include "fencing.sidecar.validate" . -}}
- name: fence-sidecar
  image: {{ include "fencing.image" (dict "image" .image "override" $s.image) | quote }}
  imagePullPolicy: {{ .image.pullPolicy }}
  command: ["/usr/local/bin/fence-sidecar"]
  {{- if $s.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  args:
    {{- include "fencing.sidecar.args" . | nindent 4 }}
  env:
    {{- include "fencing.sidecar.env" . | nindent 4 }}
  ports:
    - name: fence-metrics
      containerPort: {{ $s.metricsPort }}
      protocol: TCP
  {{- include "fencing.sidecar.probes" . | trim | nindent 2 }}
  resources:
    {{- toYaml $s.resources | nindent 4 }}
  {{- with $s.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    {{- include "fencing.sidecar.volumeMounts" . | nindent 4 }}
{{- end }}

{{/*
The parts of the sidecar container, for a validator chart that runs
fence-sidecar as its client's entrypoint under the process gate (docs/gate.md;
charts/examples/besu-validator): its arguments, environment, probes and
volume mounts, each as list items (probes as map entries).
*/}}
{{- define "fencing.sidecar.args" -}}
{{- $s := .sidecar -}}
- --coordinator={{ join "," $s.coordinatorURLs }}
{{- if or $s.coordinatorCA.configMapName $s.coordinatorCA.secretName }}
- --coordinator-ca=/etc/fencing/coordinator-ca/{{ $s.coordinatorCA.key }}
{{- end }}
# The coordinator takes the sidecar's name from its token's Pod name.
- --name=$(POD_NAME)
- --holder={{ $s.holder }}
- --validator={{ join "," $s.validators }}
- --key=/etc/fencing/key/{{ $s.keySecret.key }}
{{- if $s.keySecret.passwordKey }}
- --password-file=/etc/fencing/key/{{ $s.keySecret.passwordKey }}
{{- end }}
- --listen=127.0.0.1:{{ $s.port }}
- --metrics-listen=:{{ $s.metricsPort }}
- --state-dir=/var/lib/fencing
- --mode={{ $s.mode }}
- --lease-ttl={{ $s.leaseTTL }}
- --token-file=/var/run/secrets/fencing/token
{{- range $s.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{- define "fencing.sidecar.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- range .sidecar.extraEnv }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end }}

{{- define "fencing.sidecar.probes" -}}
{{- $s := .sidecar }}
{{- if $s.readinessProbe.enabled }}
readinessProbe:
  httpGet:
    path: /readyz
    port: fence-metrics
  periodSeconds: {{ $s.readinessProbe.periodSeconds }}
  failureThreshold: {{ $s.readinessProbe.failureThreshold }}
  timeoutSeconds: 2
{{- end }}
{{- if $s.livenessProbe.enabled }}
livenessProbe:
  httpGet:
    path: /healthz
    port: fence-metrics
  initialDelaySeconds: 5
  periodSeconds: {{ $s.livenessProbe.periodSeconds }}
  failureThreshold: {{ $s.livenessProbe.failureThreshold }}
  timeoutSeconds: 2
{{- end }}
{{- end }}

{{- define "fencing.sidecar.volumeMounts" -}}
{{- $s := .sidecar -}}
- name: fencing-key
  mountPath: /etc/fencing/key
  readOnly: true
- name: fencing-token
  mountPath: /var/run/secrets/fencing
  readOnly: true
- name: {{ $s.state.volumeName }}
  mountPath: /var/lib/fencing
{{- if or $s.coordinatorCA.configMapName $s.coordinatorCA.secretName }}
- name: fencing-coordinator-ca
  mountPath: /etc/fencing/coordinator-ca
  readOnly: true
{{- end }}
{{- end }}

{{/*
fencing.sidecar.validate fails the render with every problem of the sidecar
values at once. A strict-mode sidecar must never talk to a coordinator it
cannot authenticate: coordinator URLs must be https unless
sidecar.allowPlainHTTP says otherwise.
*/}}
{{- define "fencing.sidecar.validate" -}}
{{- $s := .sidecar }}
{{- $errs := list }}
{{- if not $s.validators }}
{{- $errs = append $errs "sidecar.validators must list the validator IDs this Pod signs for" }}
{{- end }}
{{- if not $s.holder }}
{{- $errs = append $errs "sidecar.holder must name this cluster's failure domain, e.g. region-a" }}
{{- end }}
{{- if not $s.keySecret.name }}
{{- $errs = append $errs "sidecar.keySecret.name must name the Secret holding the validator key" }}
{{- end }}
{{- if not $s.coordinatorURLs }}
{{- $errs = append $errs "sidecar.coordinatorURLs must list this region's coordinator URL(s), e.g. https://fencing.fencing.svc:7600" }}
{{- end }}
{{- range $s.coordinatorURLs }}
{{- if and (not (hasPrefix "https://" .)) (not $s.allowPlainHTTP) }}
{{- $errs = append $errs (printf "sidecar.coordinatorURLs has %s: the sidecar sends its token to the coordinator and trusts its answers, so use https:// (the coordinator chart serves TLS by default); only behind a service mesh that authenticates Pod traffic set sidecar.allowPlainHTTP=true" .) }}
{{- end }}
{{- end }}
{{- if and $s.coordinatorCA.configMapName $s.coordinatorCA.secretName }}
{{- $errs = append $errs "sidecar.coordinatorCA: set configMapName or secretName, not both" }}
{{- end }}
{{- if $errs }}
{{- fail (printf "\n\nThe fencing sidecar needs these values:\n  - %s\n" (join "\n  - " $errs)) }}
{{- end }}
{{- end }}

{{/* fencing.sidecar.volumes: the key, token (and emptyDir state) volumes, list items. */}}
{{- define "fencing.sidecar.volumes" -}}
{{- $s := .sidecar }}
{{- include "fencing.sidecar.validate" . -}}
- name: fencing-key
  secret:
    secretName: {{ $s.keySecret.name }}
    defaultMode: 0400
    items:
      - key: {{ $s.keySecret.key }}
        path: {{ $s.keySecret.key }}
      {{- if $s.keySecret.passwordKey }}
      - key: {{ $s.keySecret.passwordKey }}
        path: {{ $s.keySecret.passwordKey }}
      {{- end }}
- name: fencing-token
  projected:
    defaultMode: 0400
    sources:
      - serviceAccountToken:
          audience: {{ $s.tokenAudience | default .auth.audience | quote }}
          expirationSeconds: {{ $s.tokenExpirationSeconds }}
          path: token
{{- if $s.coordinatorCA.secretName }}
- name: fencing-coordinator-ca
  secret:
    secretName: {{ $s.coordinatorCA.secretName }}
    defaultMode: 0444
    items:
      - key: {{ $s.coordinatorCA.key }}
        path: {{ $s.coordinatorCA.key }}
{{- else if $s.coordinatorCA.configMapName }}
- name: fencing-coordinator-ca
  configMap:
    name: {{ $s.coordinatorCA.configMapName }}
    defaultMode: 0444
    items:
      - key: {{ $s.coordinatorCA.key }}
        path: {{ $s.coordinatorCA.key }}
{{- end }}
{{- if $s.state.emptyDir }}
- name: {{ $s.state.volumeName }}
  emptyDir: {}
{{- end }}
{{- end }}

{{/* fencing.sidecar.volumeClaimTemplate: the state claim for a StatefulSet's volumeClaimTemplates, one list item (nothing when state.emptyDir). */}}
{{- define "fencing.sidecar.volumeClaimTemplate" -}}
{{- $s := .sidecar }}
{{- if not $s.state.emptyDir -}}
- metadata:
    name: {{ $s.state.volumeName }}
  spec:
    accessModes: ["ReadWriteOnce"]
    {{- if $s.state.storageClassName }}
    storageClassName: {{ $s.state.storageClassName }}
    {{- end }}
    resources:
      requests:
        storage: {{ $s.state.size }}
{{- end }}
{{- end }}

{{/* fencing.sidecar.podLabels: labels the PodMonitor selects on, map entries. */}}
{{- define "fencing.sidecar.podLabels" -}}
fencing.validator-fencing.io/sidecar: "true"
fencing.validator-fencing.io/holder: {{ .sidecar.holder | quote }}
{{- end }}

{{/* fencing.sidecar.signerURL: where the validator container reaches the sidecar. */}}
{{- define "fencing.sidecar.signerURL" -}}
http://127.0.0.1:{{ .sidecar.port }}
{{- end }}
