{{- define "lucid-operator.labels" -}}
app.kubernetes.io/name: lucid-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lucid
{{- end -}}
{{- define "lucid-operator.selector" -}}
app.kubernetes.io/name: lucid-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
