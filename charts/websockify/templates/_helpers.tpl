{{- define "websockify.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "websockify.fullname" -}}
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

{{- define "websockify.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "websockify.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "websockify.selectorLabels" -}}
app.kubernetes.io/name: {{ include "websockify.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "websockify.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "websockify.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding tls.crt and tls.key. */}}
{{- define "websockify.tlsSecret" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "websockify.fullname" .) }}
{{- end }}
{{- end }}

{{/* Where the token file is mounted. */}}
{{- define "websockify.tokenFile" -}}
/etc/websockify/tokens/tokens.cfg
{{- end }}

{{/* True when targets come from a token file (not Redis). */}}
{{- define "websockify.tokenFileMounted" -}}
{{- if and .Values.tokens.enabled (ne .Values.tokens.plugin "TokenRedis") }}true{{ end }}
{{- end }}
