{{/* Common names and labels. */}}
{{- define "evident.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "evident.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "evident.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "evident.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Environment shared by the writer and the replicas. */}}
{{- define "evident.objectStoreEnv" -}}
{{- if .Values.objectStore.endpoint }}
- name: EVIDENT_S3_ENDPOINT
  value: {{ .Values.objectStore.endpoint | quote }}
{{- end }}
{{- if .Values.objectStore.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ .Values.objectStore.existingSecret }}, key: AWS_ACCESS_KEY_ID}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.objectStore.existingSecret }}, key: AWS_SECRET_ACCESS_KEY}
{{- end }}
{{- end -}}

{{- define "evident.scheme" -}}
{{- if .Values.tls.secretName }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}

{{/* The part of the configuration the writer and the replicas share. */}}
{{- define "evident.commonConfig" -}}
listen: 0.0.0.0:{{ .Values.service.port }}
data: /var/lib/evident
{{- if .Values.tls.secretName }}
tls:
  certFile: /etc/evident/tls/tls.crt
  keyFile: /etc/evident/tls/tls.key
{{- end }}
{{- end -}}
