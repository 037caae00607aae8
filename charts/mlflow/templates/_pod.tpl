{{/*
The pod spec fields every MLflow-image pod shares: the server Deployment, the migration Job and
the helm test pod (Grafana's _pod.tpl is the model). Identity, pull secrets, security and
scheduling are written here once, so they cannot drift between the three; each object's file
keeps its own containers and volumes.

Usage, at the indentation of the pod spec's keys:
  {{- include "mlflow.podSpec" (dict "root" . "component" "server") | nindent 6 }}

component is "server", "migrate" or "test":
- the server and the migration Job run as the chart's ServiceAccount (the Job needs the same
  Workload Identity to reach Cloud SQL); the test pod is a plain client of the Service and runs
  with the namespace's default one, without an API token;
- nodeSelector, tolerations, nodeAffinity and priorityClassName apply to every pod: they say
  which nodes MLflow's pods may use (a node pool, a taint), and a Job that ignored them would
  land on nodes the user kept it off, or never schedule on a cluster of tainted nodes;
- podAffinity, podAntiAffinity and topologySpreadConstraints place server replicas relative to
  one another: they apply to the server only. On a one-off pod a required anti-affinity to the
  server pods would keep the Job off every node that runs a server, and the server's new pods
  wait for the Job, so a small cluster would never finish the rollout.
*/}}
{{- define "mlflow.podSpec" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $server := eq .component "server" }}
{{- if ne .component "test" }}
serviceAccountName: {{ include "mlflow.serviceAccountName" $root }}
automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
{{- else }}
automountServiceAccountToken: false
{{- end }}
# Service links would put MLFLOW_PORT=tcp://… (a release named mlflow) into the env,
# which MLflow reads as its --port; nothing here needs them.
enableServiceLinks: false
{{- with include "mlflow.imagePullSecrets" $root }}
{{ . | trim }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $affinity := deepCopy ($v.affinity | default dict) }}
{{- if not $server }}
{{- $affinity = pick $affinity "nodeAffinity" }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $server }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  {{- /* Without a selector of its own, a constraint spreads this Deployment's pods. */}}
  {{- $constraint := deepCopy . }}
  {{- if not (hasKey $constraint "labelSelector") }}
  {{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "mlflow.componentSelectorLabels" (list $root "server") | fromYaml)) }}
  {{- end }}
  - {{- toYaml $constraint | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}
