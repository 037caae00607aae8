{{/*
Checks of value combinations that values.schema.json cannot express. Each message names the
value and the fix. Called once, from the server Deployment.
*/}}
{{- define "mlflow.validate" -}}
{{- $v := .Values }}
{{- $errors := list }}

{{- if eq $v.database.type "cloudsql" }}
{{- $c := $v.database.cloudsql }}
{{- if not (regexMatch "^[a-z][a-z0-9.:-]*[a-z0-9]:[a-z]+-[a-z]+[0-9]+:[a-z][a-z0-9-]*$" $c.instanceConnectionName) }}
{{- $errors = append $errors (printf "database.cloudsql.instanceConnectionName=%q is not PROJECT:REGION:INSTANCE (for example my-project:europe-west1:mlflow); find it with `gcloud sql instances describe INSTANCE --format='value(connectionName)'`" $c.instanceConnectionName) }}
{{- end }}
{{- if and (eq $c.auth "password") (not $c.existingSecret) }}
{{- $errors = append $errors "database.cloudsql.existingSecret is empty: with database.cloudsql.auth=password, name the Secret that holds the database user's password (the mlflow-helm CLI creates it), or set database.cloudsql.auth=iam" }}
{{- end }}
{{- if and (eq $c.auth "iam") (not $c.user) (not $v.serviceAccount.gcpServiceAccount) }}
{{- $errors = append $errors "database.cloudsql.auth=iam needs a database user: set serviceAccount.gcpServiceAccount (the user is derived from it) or database.cloudsql.user" }}
{{- end }}
{{- if and (eq $c.auth "iam") (eq $c.engine "postgres") $c.user (hasSuffix ".gserviceaccount.com" $c.user) }}
{{- $errors = append $errors (printf "database.cloudsql.user=%q: a PostgreSQL IAM user is the service account email without \".gserviceaccount.com\" (%s)" $c.user (trimSuffix ".gserviceaccount.com" $c.user)) }}
{{- end }}
{{- end }}

{{- if eq $v.database.type "external" }}
{{- $e := $v.database.external }}
{{- if not $e.existingSecret }}
{{- $errors = append $errors "database.external.existingSecret is empty: name the Secret that holds the database password (key database.external.secretKey) or the whole URI (key database.external.uriKey)" }}
{{- end }}
{{- if and (not $e.uriKey) (not $e.host) }}
{{- $errors = append $errors "database.external.host is empty: set the database host, or put the whole URI in a Secret and set database.external.uriKey" }}
{{- end }}
{{- end }}

{{- if eq $v.artifacts.type "gcs" }}
{{- if not $v.artifacts.gcs.bucket }}
{{- $errors = append $errors "artifacts.gcs.bucket is empty: with artifacts.type=gcs, set the bucket name (without gs://)" }}
{{- else if not (regexMatch "^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$" $v.artifacts.gcs.bucket) }}
{{- $errors = append $errors (printf "artifacts.gcs.bucket=%q is not a bucket name: use lowercase letters, digits, '-', '_' and '.', without gs:// or a path (put the path in artifacts.gcs.path)" $v.artifacts.gcs.bucket) }}
{{- end }}
{{- end }}

{{- if eq $v.artifacts.type "pvc" }}
{{- if not $v.artifacts.serve }}
{{- $errors = append $errors "artifacts.serve=false needs artifacts.type=gcs: clients cannot reach the server's volume, so artifacts on a PVC must be served through the server" }}
{{- end }}
{{- $rwx := or (has "ReadWriteMany" $v.artifacts.persistence.accessModes) (ne $v.artifacts.persistence.existingClaim "") }}
{{- $replicas := ternary $v.autoscaling.maxReplicas $v.replicaCount $v.autoscaling.enabled }}
{{- if and (gt (int $replicas) 1) (not $rwx) }}
{{- $errors = append $errors (printf "artifacts.type=pvc with %d replicas: a ReadWriteOnce volume holds one server pod. Set replicaCount=1 (and autoscaling.enabled=false), use artifacts.type=gcs, or use a ReadWriteMany volume (artifacts.persistence.accessModes=[ReadWriteMany] or artifacts.persistence.existingClaim)" (int $replicas)) }}
{{- end }}
{{- end }}

{{- if and $v.serviceAccount.gcpServiceAccount (not (regexMatch "^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9.:-]*\\.iam\\.gserviceaccount\\.com$" $v.serviceAccount.gcpServiceAccount)) }}
{{- $errors = append $errors (printf "serviceAccount.gcpServiceAccount=%q is not a Google service account email (NAME@PROJECT.iam.gserviceaccount.com)" $v.serviceAccount.gcpServiceAccount) }}
{{- end }}
{{- if and $v.serviceAccount.gcpServiceAccount (not $v.serviceAccount.create) }}
{{- $errors = append $errors "serviceAccount.gcpServiceAccount is set but serviceAccount.create=false: annotate your own ServiceAccount with iam.gke.io/gcp-service-account, or let the chart create it" }}
{{- end }}

{{- if and $v.podDisruptionBudget.enabled (not (kindIs "invalid" $v.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable)) }}
{{- $errors = append $errors "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}

{{- if and $v.autoscaling.enabled (lt (int $v.autoscaling.maxReplicas) (int $v.autoscaling.minReplicas)) }}
{{- $errors = append $errors (printf "autoscaling.maxReplicas=%v is below autoscaling.minReplicas=%v" $v.autoscaling.maxReplicas $v.autoscaling.minReplicas) }}
{{- end }}

{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.enabled) }}
{{- $errors = append $errors "metrics.serviceMonitor.enabled=true needs metrics.enabled=true (the server only exposes /metrics then)" }}
{{- end }}

{{- if and $v.httpRoute.enabled (not $v.httpRoute.parentRefs) }}
{{- $errors = append $errors "httpRoute.enabled=true needs httpRoute.parentRefs: name the Gateway the route attaches to" }}
{{- end }}

{{- if $v.server.staticPrefix }}
{{- if not (regexMatch "^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]$" $v.server.staticPrefix) }}
{{- $errors = append $errors (printf "server.staticPrefix=%q must start with '/' and not end with '/' (for example /mlflow)" $v.server.staticPrefix) }}
{{- end }}
{{- end }}

{{- if $v.networkPolicy.enabled }}
{{- if not $v.networkPolicy.ingressFrom }}
{{- range $route := list "ingress" "httpRoute" "virtualService" }}
{{- if (index $v $route).enabled }}
{{- $errors = append $errors (printf "networkPolicy.ingressFrom is empty while %s.enabled=true: the server's NetworkPolicy would admit only pods of this namespace and drop the traffic of the controller or gateway, which runs in its own namespace. Add it, e.g. networkPolicy.ingressFrom=[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}, {podSelector: {}}]" $route) }}
{{- end }}
{{- end }}
{{- if $v.metrics.serviceMonitor.enabled }}
{{- $errors = append $errors "networkPolicy.ingressFrom is empty while metrics.serviceMonitor.enabled=true: Prometheus runs in its own namespace and could not scrape /metrics. Add its namespace to networkPolicy.ingressFrom (and {podSelector: {}} to keep this namespace's clients)" }}
{{- end }}
{{- end }}
{{- end }}

{{- if and $v.ingress.enabled $v.server.allowedHosts.enabled (not $v.server.allowedHosts.extra) }}
{{- range $v.ingress.hosts }}
{{- if not .host }}
{{- $errors = append $errors "ingress.hosts has a rule without host: it serves any Host header (a DNS name, the load balancer's IP), which MLflow's host check refuses with 403, and an Ingress cannot rewrite it. Set the host, or list the names clients use in server.allowedHosts.extra" }}
{{- end }}
{{- end }}
{{- end }}

{{- if $v.server.jobExecution }}
{{- $limit := dig "limits" "memory" "" $v.server.resources }}
{{- if and $limit (lt (include "mlflow.bytes" $limit | float64) 3221225472.0) }}
{{- $errors = append $errors (printf "server.jobExecution=true with server.resources.limits.memory=%s: MLflow's job runner holds about 1.8 GB on top of the workers (2.6 GB measured with 2 workers), so the pod would be OOM-killed. Set server.resources.limits.memory to 3Gi or more" $limit) }}
{{- end }}
{{- end }}

{{- /* A worker runs up to server.threadLimit Flask requests at once (anyio's 40 when 0); a log-batch
request holds one connection while it takes a second, so that many holders need one more. */}}
{{- $threads := int (default 40 $v.server.threadLimit) }}
{{- $conns := int (add $v.database.pool.size $v.database.pool.maxOverflow) }}
{{- if le $conns $threads }}
{{- $errors = append $errors (printf "database.pool.size + database.pool.maxOverflow = %d with server.threadLimit=%d: a worker runs up to %d requests at once and a log-batch request holds two connections, so concurrent log-batch calls can wait the 30 s pool timeout. Make the sum %d or more (2 x threadLimit lets none wait), or lower server.threadLimit" $conns (int $v.server.threadLimit) $threads (add1 $threads)) }}
{{- end }}

{{- if and (eq $v.migrations.argocd.hook "PreSync") (eq $v.database.type "incluster") }}
{{- $errors = append $errors "migrations.argocd.hook=PreSync with database.type=incluster: a PreSync hook runs before the StatefulSet exists, so the first sync would wait for a database that is never created. Use migrations.argocd.hook=Sync (it runs beside the database)" }}
{{- end }}

{{- /* Kubernetes requires Service names to be DNS-1035 labels; Helm's release names may start
with a digit or hold dots (validate_name.go in Helm's chartutil). */}}
{{- $svc := include "mlflow.serviceName" . }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $svc) }}
{{- $errors = append $errors (printf "the Service name %q (from the release name %q) is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter), which Kubernetes requires of Service names: set fullnameOverride (for example fullnameOverride=mlflow) or use a release name that starts with a letter and has no '.'" $svc .Release.Name) }}
{{- end }}

{{- if $errors }}
{{- fail (printf "\n\nInvalid values for the mlflow chart:\n  - %s\n" (join "\n  - " $errors)) }}
{{- end }}
{{- end }}
