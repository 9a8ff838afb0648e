{{/* Names follow the usual Helm convention: nameOverride, fullnameOverride, at most 63 characters. */}}
{{- define "lucid-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's objects' name; cluster-scoped objects use it too, so `helm install view`
     makes `view-lucid-operator`, never the built-in `view` role. */}}
{{- define "lucid-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lucid-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lucid-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lucid-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "lucid-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lucid-operator.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lucid
{{- end -}}

{{- define "lucid-operator.selector" -}}
app.kubernetes.io/name: {{ include "lucid-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The rules the operator's code needs, no more (the chart README says why each exists). */}}
{{- define "lucid-operator.rules" -}}
- apiGroups: [lucid.io]
  resources: [lucidservices, lucidphases]
  verbs: [get, list, watch]
- apiGroups: [lucid.io]
  resources: [lucidservices/status, lucidphases/status]
  verbs: [patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services, persistentvolumeclaims]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
{{- /* Recovery after a power cut: a pod in crash-loop back-off because a dependency was
  down is deleted once the dependency is Ready, so its ReplicaSet starts it at once. */}}
- apiGroups: [""]
  resources: [pods]
  verbs: [delete]
{{- /* Services with more than one replica get a budget so a drain leaves one ready pod. */}}
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps, secrets]
  verbs: [get, list, watch]
{{- /* Revisions: immutable copies of what a Ready revision's pods read (create), removed
  when the revision leaves the history (deletecollection by its labels); a ControllerRevision
  per revision, read back for a rollback. */}}
- apiGroups: [""]
  resources: [configmaps, secrets]
  verbs: [create, deletecollection]
- apiGroups: [apps]
  resources: [controllerrevisions]
  verbs: [get, create, delete]
{{- /* Data protection: the backup and restore Jobs of a stateful update (read once they end,
  then deleted), the pods' termination messages (the copier's result), and a scale to zero
  before the copy (patch, already granted on deployments). Backup claims use the claims
  rule above. */}}
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Nodes, read-only: where pods run and which board stopped answering (NodeLost). */}}
{{- define "lucid-operator.nodeRules" -}}
- apiGroups: [""]
  resources: [nodes]
  verbs: [list, watch]
{{- end -}}
