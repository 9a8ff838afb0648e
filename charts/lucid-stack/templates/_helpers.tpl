{{/*
"true" when a phase or service is on: `enabled` absent or true. Empty otherwise.
*/}}
{{- define "lucid-stack.on" -}}
{{- if or (not (hasKey . "enabled")) .enabled }}true{{ end -}}
{{- end }}

{{/*
Labels on every rendered resource.
*/}}
{{- define "lucid-stack.labels" -}}
app.kubernetes.io/part-of: lucid
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
The names of the services to render, as a JSON list: on, and in a phase that is on.
Fails when a service names a phase or a dependency that does not exist, or depends on a
service that is off: the dependent would wait for it forever (DependencyNotFound).
*/}}
{{- define "lucid-stack.enabledServices" -}}
{{- $root := . -}}
{{- $on := dict -}}
{{- range $name, $s := $root.Values.services -}}
  {{- $phase := get $root.Values.phases $s.phase -}}
  {{- if not $phase -}}
    {{- fail (printf "services.%s.phase: %v is not one of phases (%s)" $name $s.phase (keys $root.Values.phases | sortAlpha | join ", ")) -}}
  {{- end -}}
  {{- if and (include "lucid-stack.on" $s) (include "lucid-stack.on" $phase) -}}
    {{- $_ := set $on $name $s.phase -}}
  {{- end -}}
{{- end -}}
{{- $problems := list -}}
{{- range $name := keys $on | sortAlpha -}}
  {{- range (get $root.Values.services $name).dependsOn -}}
    {{- if not (hasKey $root.Values.services .) -}}
      {{- $problems = append $problems (printf "services.%s.dependsOn: %s is not one of services" $name .) -}}
    {{- else if not (hasKey $on .) -}}
      {{- $dep := get $root.Values.services . -}}
      {{- $why := printf "phases.%s.enabled is false" $dep.phase -}}
      {{- if not (include "lucid-stack.on" $dep) }}{{ $why = printf "services.%s.enabled is false" . }}{{ end -}}
      {{- $problems = append $problems (printf "services.%s depends on %s, which is off (%s): switch %s off too, switch %s on, or remove it from services.%s.dependsOn" $name . $why $name . $name) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- with $problems }}{{ fail (printf "\n%s" (join "\n" .)) }}{{ end -}}
{{- /* Rollout order: phases by how many phases precede them, then services by how many of
     their dependencies precede them. Helm creates objects of one kind in this order, and the
     operator sees them in creation order, so a phase's members all exist before any service
     of a later phase is gated on it (a phase with no members yet would count as Ready). */ -}}
{{- $phaseDepth := dict -}}
{{- range until (len $root.Values.phases | add1 | int) -}}
  {{- range $p, $phase := $root.Values.phases -}}
    {{- $d := 0 -}}
    {{- range $phase.dependsOn | default list -}}
      {{- $d = max $d (add1 (get $phaseDepth . | default 0)) -}}
    {{- end -}}
    {{- $_ := set $phaseDepth $p $d -}}
  {{- end -}}
{{- end -}}
{{- $serviceDepth := dict -}}
{{- range until (len $on | add1 | int) -}}
  {{- range $name := keys $on -}}
    {{- $d := 0 -}}
    {{- range (get $root.Values.services $name).dependsOn | default list -}}
      {{- $d = max $d (add1 (get $serviceDepth . | default 0)) -}}
    {{- end -}}
    {{- $_ := set $serviceDepth $name $d -}}
  {{- end -}}
{{- end -}}
{{- $keyed := list -}}
{{- range $name, $phase := $on -}}
  {{- $keyed = append $keyed (printf "%03d %03d %s" (int (get $phaseDepth $phase)) (int (get $serviceDepth $name)) $name) -}}
{{- end -}}
{{- $ordered := list -}}
{{- range sortAlpha $keyed -}}
  {{- $ordered = append $ordered (splitList " " . | last) -}}
{{- end -}}
{{- $ordered | toJson -}}
{{- end }}

{{/*
A phase's dependsOn as a JSON list, with every phase that is off replaced by its own
dependencies, so switching a phase off keeps the order of the others (support after core
when application is off). Argument: dict "root" $ "phase" <name>.
*/}}
{{- define "lucid-stack.phaseDependsOn" -}}
{{- $phases := .root.Values.phases -}}
{{- $name := .phase -}}
{{- $pending := (get $phases $name).dependsOn | default list -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- range until (len $phases | add1 | int) -}}
  {{- $next := list -}}
  {{- range $pending -}}
    {{- $p := get $phases . -}}
    {{- if not $p -}}
      {{- fail (printf "phases.%s.dependsOn: %s is not one of phases (%s)" $name . (keys $phases | sortAlpha | join ", ")) -}}
    {{- else if hasKey $seen . -}}
    {{- else if include "lucid-stack.on" $p -}}
      {{- $_ := set $seen . true -}}
      {{- $out = append $out . -}}
    {{- else -}}
      {{- $_ := set $seen . true -}}
      {{- $next = concat $next ($p.dependsOn | default list) -}}
    {{- end -}}
  {{- end -}}
  {{- $pending = $next -}}
{{- end -}}
{{- $out | toJson -}}
{{- end }}
