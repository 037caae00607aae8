{{/*
Checks of value combinations that values.schema.json cannot express. Each message names the
value and the fix. Called once, from the server Deployment.
*/}}
{{- define "mlflow.validate" -}}
{{- $v := .Values }}
{{- $errors := list }}

{{- $dumpToGcs := and (eq (include "mlflow.migrateBackup.mode" .) "dump") (eq (include "mlflow.migrateBackup.destination" .) "gcs") }}
{{- $scheduledToGcs := and (eq .Values.database.type "incluster") .Values.postgresql.backup.enabled (eq .Values.postgresql.backup.destination "gcs") }}
{{- if and (or $dumpToGcs $scheduledToGcs) (not (.Values.backups.gcs.bucket | default .Values.artifacts.gcs.bucket)) }}
{{- $errors = append $errors (printf "%s go to GCS, but no bucket is named: set backups.gcs.bucket (or artifacts.gcs.bucket), or send them to the backup volume (%s)" (ternary "the dumps before migrating" "the scheduled dumps" $dumpToGcs) (ternary "migrations.backup.destination=volume" "postgresql.backup.destination=volume" $dumpToGcs)) }}
{{- end }}

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
{{- $errors = append $errors (printf "artifacts.type=pvc with %d replicas: a ReadWriteOnce volume holds one server pod. Set replicaCount=1 (and autoscaling.enabled=false), use artifacts.type=gcs, or use a ReadWriteMany volume: on a new install, artifacts.persistence.accessModes=[ReadWriteMany] with a StorageClass that offers it (GKE: Filestore's standard-rwx); for a release whose artifact claim exists (its access modes cannot change), create a ReadWriteMany claim, copy the artifacts into it and set artifacts.persistence.existingClaim to it (see the chart README, Artifacts)" (int $replicas)) }}
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

{{- range $scraper := list "serviceMonitor" "podMonitoring" }}
{{- if and (index $v.metrics $scraper).enabled (not $v.metrics.enabled) }}
{{- $errors = append $errors (printf "metrics.%s.enabled=true needs metrics.enabled=true (the server only exposes /metrics then)" $scraper) }}
{{- end }}
{{- end }}

{{- /* Pod ranges for the Host check (mlflow.cidrHostPatterns turns them into patterns). */}}
{{- range $cidr := $v.server.allowedHosts.podCIDRs }}
{{- $hint := "for example 100.64.0.0/10 or 2600:1900:4120:fabf::/64; list other names or addresses in server.allowedHosts.extra" }}
{{- if regexMatch "^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$" $cidr }}
{{- $addr := first (splitList "/" $cidr) }}{{ $bits := int (last (splitList "/" $cidr)) }}
{{- $bad := or (lt $bits 1) (gt $bits 32) }}
{{- range (splitList "." $addr) }}{{ if or (gt (int .) 255) (regexMatch "^0[0-9]" .) }}{{ $bad = true }}{{ end }}{{ end }}
{{- if $bad }}
{{- $errors = append $errors (printf "server.allowedHosts.podCIDRs: %q is not an IPv4 CIDR with a prefix of 1 to 32 bits (%s)" $cidr $hint) }}
{{- end }}
{{- else if regexMatch "^[0-9A-Fa-f:]*:[0-9A-Fa-f:]*/[0-9]{1,3}$" $cidr }}
{{- $addr := lower (first (splitList "/" $cidr)) }}{{ $bits := int (last (splitList "/" $cidr)) }}
{{- $head := splitList ":" (first (splitList "::" $addr)) }}
{{- $n := int (div $bits 16) }}
{{- $ok := and (eq (mod $bits 16) 0) (ge $bits 16) (le $bits 112) (le $n (len $head)) (le (len (splitList "::" $addr)) 2) }}
{{- if $ok }}
{{- range $i := until $n }}{{ if not (regexMatch "^0*[1-9a-f][0-9a-f]{0,3}$" (index $head $i)) }}{{ $ok = false }}{{ end }}{{ end }}
{{- end }}
{{- if not $ok }}
{{- $errors = append $errors (printf "server.allowedHosts.podCIDRs: %q: an IPv6 range must end on a 16-bit boundary (/16 to /112) with no zero group in its prefix, written out before any '::' (the chart matches the start of the address as Kubernetes prints it); %s" $cidr $hint) }}
{{- end }}
{{- else }}
{{- $errors = append $errors (printf "server.allowedHosts.podCIDRs: %q is not a CIDR (%s)" $cidr $hint) }}
{{- end }}
{{- end }}

{{- if and $v.httpRoute.enabled (not $v.httpRoute.parentRefs) }}
{{- $errors = append $errors "httpRoute.enabled=true needs httpRoute.parentRefs: name the Gateway the route attaches to" }}
{{- end }}

{{- if $v.server.staticPrefix }}
{{- if not (regexMatch "^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]$" $v.server.staticPrefix) }}
{{- $errors = append $errors (printf "server.staticPrefix=%q must start with '/' and not end with '/' (for example /mlflow)" $v.server.staticPrefix) }}
{{- end }}
{{- end }}

{{- $lb := $v.gcpLoadBalancer }}
{{- if $lb.enabled }}
{{- if and $lb.iap.enabled (not $v.ingress.enabled) (not $v.httpRoute.enabled) }}
{{- $errors = append $errors "gcpLoadBalancer.iap.enabled=true needs the route IAP is set on: ingress.enabled=true (GKE Ingress, a BackendConfig) or httpRoute.enabled=true (GKE Gateway, a GCPBackendPolicy)" }}
{{- end }}
{{- if and $lb.iap.enabled $v.httpRoute.enabled (or (not $lb.iap.oauthClientId) (not $lb.iap.oauthClientSecret)) }}
{{- $errors = append $errors "gcpLoadBalancer.iap.enabled=true with httpRoute.enabled: a GKE Gateway's GCPBackendPolicy needs your OAuth client, set gcpLoadBalancer.iap.oauthClientId and gcpLoadBalancer.iap.oauthClientSecret (a Secret whose key `key` holds the client secret: kubectl create secret generic mlflow-iap --from-literal=key=CLIENT_SECRET)" }}
{{- end }}
{{- end }}
{{- $googleLB := include "mlflow.admitsGoogleLoadBalancers" . }}

{{- if $v.networkPolicy.enabled }}
{{- if and $v.networkPolicy.proxyOnlySubnets (not $googleLB) }}
{{- $errors = append $errors "networkPolicy.proxyOnlySubnets is set but networkPolicy.allowGoogleLoadBalancers=false: the subnets are admitted only with it (or with gcpLoadBalancer.enabled). Set networkPolicy.allowGoogleLoadBalancers=true" }}
{{- end }}
{{- if not $v.networkPolicy.ingressFrom }}
{{- range $route := list "ingress" "httpRoute" }}
{{- if and (index $v $route).enabled (not $googleLB) }}
{{- $errors = append $errors (printf "networkPolicy.ingressFrom is empty while %s.enabled=true: the server's NetworkPolicy would admit only pods of this namespace and drop the load balancer's traffic. On GKE (Ingress class gce or gce-internal, or a GKE Gateway) set networkPolicy.allowGoogleLoadBalancers=true, and networkPolicy.proxyOnlySubnets for regional or internal load balancers. With an in-cluster controller (ingress-nginx, Envoy Gateway) admit its namespace and keep this one's clients, e.g. networkPolicy.ingressFrom=[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}, {podSelector: {}}]" $route) }}
{{- end }}
{{- end }}
{{- if $v.virtualService.enabled }}
{{- $errors = append $errors "networkPolicy.ingressFrom is empty while virtualService.enabled=true: the server's NetworkPolicy would admit only pods of this namespace and drop the Istio ingress gateway's traffic. Admit its namespace and keep this one's clients, e.g. networkPolicy.ingressFrom=[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: istio-system}}}, {podSelector: {}}]" }}
{{- end }}
{{- if $v.metrics.serviceMonitor.enabled }}
{{- $errors = append $errors "networkPolicy.ingressFrom is empty while metrics.serviceMonitor.enabled=true: Prometheus runs in its own namespace and could not scrape /metrics. Add its namespace to networkPolicy.ingressFrom (and {podSelector: {}} to keep this namespace's clients)" }}
{{- end }}
{{- if $v.metrics.podMonitoring.enabled }}
{{- $errors = append $errors "networkPolicy.ingressFrom is empty while metrics.podMonitoring.enabled=true: the managed collectors run in namespace gmp-system and could not scrape /metrics. Admit them and keep this namespace's clients, e.g. networkPolicy.ingressFrom=[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: gmp-system}}, podSelector: {matchLabels: {app.kubernetes.io/name: collector}}}, {podSelector: {}}]" }}
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
{{- else if and (eq $v.migrations.argocd.hook "PreSync") (include "mlflow.backupVolume.enabled" .) }}
{{- $errors = append $errors "migrations.argocd.hook=PreSync with the backup volume (the dumps before migrating go to a volume, or scheduled dumps are on): the migration Job mounts the claim, which Argo CD creates in the Sync phase, after PreSync, so the first sync would wait for it forever. Use migrations.argocd.hook=Sync, or send the dumps to GCS (migrations.backup.destination=gcs)" }}
{{- end }}

{{- /*
Upgrades the API server would refuse, caught while the objects exist (lookup: install and
upgrade only; empty under `helm template`). A StatefulSet's volumeClaimTemplates cannot change
("updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', ... are
forbidden", Kubernetes pkg/apis/apps/validation ValidateStatefulSetUpdate), and a bound claim's
spec is "immutable after creation except resources.requests" (which may only grow:
pkg/apis/core/validation ValidatePersistentVolumeClaimUpdate).
*/}}
{{- if eq $v.database.type "incluster" }}
{{- $p := $v.postgresql.persistence }}
{{- $sts := include "mlflow.postgresql.fullname" . }}
{{- $claim := printf "data-%s-0" $sts }}
{{- $ns := .Release.Namespace }}
{{- $liveSts := lookup "apps/v1" "StatefulSet" $ns $sts }}
{{- if not $liveSts }}
{{- /* A claim kept from an earlier install (retention policy Retain): a new StatefulSet adopts
it as it is and never resizes it, so a larger size would silently not apply. */}}
{{- $kept := dig "spec" "resources" "requests" "storage" "" (lookup "v1" "PersistentVolumeClaim" $ns $claim) | toString }}
{{- if and $kept (gt (include "mlflow.bytes" $p.size | float64) (include "mlflow.bytes" $kept | float64)) }}
{{- $errors = append $errors (printf "postgresql.persistence.size=%s: the database claim %s kept from an earlier install holds %s, and a StatefulSet never resizes a claim that exists. Grow it first: kubectl -n %s patch pvc %s -p '{\"spec\":{\"resources\":{\"requests\":{\"storage\":\"%s\"}}}}' (the StorageClass needs allowVolumeExpansion: true), then run this again; or set postgresql.persistence.size=%s" $p.size $claim $kept $ns $claim $p.size $kept) }}
{{- end }}
{{- end }}
{{- range $t := ($liveSts | dig "spec" "volumeClaimTemplates" list) }}
{{- if eq (dig "metadata" "name" "" $t) "data" }}
{{- $live := dig "spec" "resources" "requests" "storage" "" $t | toString }}
{{- $liveBytes := include "mlflow.bytes" $live | float64 }}
{{- $wantBytes := include "mlflow.bytes" $p.size | float64 }}
{{- if and $live (gt $wantBytes $liveBytes) }}
{{- $errors = append $errors (printf "postgresql.persistence.size=%s: the StatefulSet %s was created with a %s volume claim template, and Kubernetes refuses to change a StatefulSet's volumeClaimTemplates. To grow the database volume: (1) kubectl -n %s patch pvc %s -p '{\"spec\":{\"resources\":{\"requests\":{\"storage\":\"%s\"}}}}' (the StorageClass needs allowVolumeExpansion: true, see kubectl get storageclass); (2) kubectl -n %s delete statefulset %s --cascade=orphan (the pod and its volume keep running); (3) run this upgrade again: Helm creates the StatefulSet anew with the new size and it adopts the running pod. Or keep postgresql.persistence.size=%s" $p.size $sts $live $ns $claim $p.size $ns $sts $live) }}
{{- else if and $live (lt $wantBytes $liveBytes) }}
{{- $errors = append $errors (printf "postgresql.persistence.size=%s is smaller than the %s the StatefulSet %s was created with: a volume cannot shrink. Keep postgresql.persistence.size=%s (a smaller volume needs a new release: pg_dump the database and restore it there)" $p.size $live $sts $live) }}
{{- end }}
{{- $liveModes := dig "spec" "accessModes" list $t }}
{{- if ne (toJson $liveModes) (toJson $p.accessModes) }}
{{- $errors = append $errors (printf "postgresql.persistence.accessModes=%s: the StatefulSet %s was created with %s, and neither its volumeClaimTemplates nor the bound claim %s can change. Keep postgresql.persistence.accessModes=%s" (toJson $p.accessModes) $sts (toJson $liveModes) $claim (toJson $liveModes)) }}
{{- end }}
{{- $liveClass := dig "spec" "storageClassName" "" $t }}
{{- if ne $liveClass $p.storageClass }}
{{- $errors = append $errors (printf "postgresql.persistence.storageClass=%q: the StatefulSet %s was created with %q, and neither its volumeClaimTemplates nor the bound claim %s can change. Keep postgresql.persistence.storageClass=%q (another storage class needs a new release: pg_dump the database and restore it there)" $p.storageClass $sts $liveClass $claim $liveClass) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- if and (eq $v.artifacts.type "pvc") (not $v.artifacts.persistence.existingClaim) }}
{{- $p := $v.artifacts.persistence }}
{{- $name := include "mlflow.artifactsClaimName" . }}
{{- $pvc := lookup "v1" "PersistentVolumeClaim" .Release.Namespace $name }}
{{- if $pvc }}
{{- $liveModes := dig "spec" "accessModes" list $pvc }}
{{- $move := printf "To change it, move the artifacts to a new claim: create a PersistentVolumeClaim with the access modes and storage class you want (ReadWriteMany on GKE: storageClassName standard-rwx, Filestore), copy the data with a pod that mounts both claims (cp -a /old/. /new/) while the server is scaled to 0, then set artifacts.persistence.existingClaim to the new claim (the old one, %s, is kept by helm.sh/resource-policy: keep until you delete it)" $name }}
{{- if ne (toJson $liveModes) (toJson $p.accessModes) }}
{{- $errors = append $errors (printf "artifacts.persistence.accessModes=%s: the claim %s was created with %s, and Kubernetes refuses to change a bound claim's access modes (only its size may grow). Keep artifacts.persistence.accessModes=%s. %s" (toJson $p.accessModes) $name (toJson $liveModes) (toJson $liveModes) $move) }}
{{- end }}
{{- $liveClass := dig "spec" "storageClassName" "" $pvc }}
{{- if and $p.storageClass (ne $liveClass $p.storageClass) }}
{{- $errors = append $errors (printf "artifacts.persistence.storageClass=%q: the claim %s was created with %q, and Kubernetes refuses to change a bound claim's storage class. Keep artifacts.persistence.storageClass=%q. %s" $p.storageClass $name $liveClass $liveClass $move) }}
{{- end }}
{{- $live := dig "spec" "resources" "requests" "storage" "" $pvc | toString }}
{{- if and $live (lt (include "mlflow.bytes" $p.size | float64) (include "mlflow.bytes" $live | float64)) }}
{{- $errors = append $errors (printf "artifacts.persistence.size=%s is smaller than the %s the claim %s requests: a volume cannot shrink. Keep artifacts.persistence.size=%s" $p.size $live $name $live) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* Kubernetes requires Service names to be DNS-1035 labels; Helm's release names may start
with a digit or hold dots (validate_name.go in Helm's chartutil). */}}
{{- $svc := include "mlflow.serviceName" . }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $svc) }}
{{- $errors = append $errors (printf "the Service name %q (from the release name %q) is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter), which Kubernetes requires of Service names: set fullnameOverride (for example fullnameOverride=mlflow) or use a release name that starts with a letter and has no '.'" $svc .Release.Name) }}
{{- end }}

{{- /* global is free-form in the schema (a parent chart passes its own globals), so its one key is checked here. */}}
{{- $registry := include "mlflow.globalImageRegistry" . }}
{{- if and $registry (not (regexMatch "^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$" $registry)) }}
{{- $errors = append $errors (printf "global.imageRegistry=%q is not a registry host with an optional path (for example europe-docker.pkg.dev/my-project/mirror): no scheme, no trailing '/', lowercase" $registry) }}
{{- end }}

{{- if and (eq $v.server.tmp.type "ephemeral") $v.server.tmp.sizeLimit }}
{{- $errors = append $errors (printf "server.tmp.sizeLimit=%s limits an emptyDir, but server.tmp.type=ephemeral makes /tmp a volume of server.tmp.ephemeral.size (%s): set the size there and leave server.tmp.sizeLimit empty" (toString $v.server.tmp.sizeLimit) (toString $v.server.tmp.ephemeral.size)) }}
{{- end }}

{{- /* Custom resources: without their CRD the API server answers "resource mapping not found"
for the whole release, after other objects may have changed. Refuse before, naming the value. */}}
{{- $crds := list }}
{{- if and $v.metrics.enabled $v.metrics.serviceMonitor.enabled }}
{{- $crds = append $crds (list "metrics.serviceMonitor.enabled" "monitoring.coreos.com/v1/ServiceMonitor" "the Prometheus Operator") }}
{{- end }}
{{- if and $v.metrics.enabled $v.metrics.podMonitoring.enabled }}
{{- $crds = append $crds (list "metrics.podMonitoring.enabled" "monitoring.googleapis.com/v1/PodMonitoring" "Google Cloud Managed Service for Prometheus (on by default on GKE 1.27 and later; else gcloud container clusters update CLUSTER --enable-managed-prometheus)") }}
{{- end }}
{{- if and $lb.enabled $v.ingress.enabled }}
{{- $crds = append $crds (list "gcpLoadBalancer.enabled" "cloud.google.com/v1/BackendConfig" "GKE (every GKE cluster serves it; elsewhere set gcpLoadBalancer.enabled=false)") }}
{{- end }}
{{- if and $lb.enabled $v.httpRoute.enabled }}
{{- $crds = append $crds (list "gcpLoadBalancer.enabled" "networking.gke.io/v1/HealthCheckPolicy" "the GKE Gateway controller (gcloud container clusters update CLUSTER --gateway-api=standard)") }}
{{- $crds = append $crds (list "gcpLoadBalancer.enabled" "networking.gke.io/v1/GCPBackendPolicy" "the GKE Gateway controller (gcloud container clusters update CLUSTER --gateway-api=standard)") }}
{{- end }}
{{- if $v.httpRoute.enabled }}
{{- $crds = append $crds (list "httpRoute.enabled" "gateway.networking.k8s.io/v1/HTTPRoute" "Gateway API v1.0 or later (on GKE: gcloud container clusters update CLUSTER --gateway-api=standard)") }}
{{- end }}
{{- if $v.virtualService.enabled }}
{{- $crds = append $crds (list "virtualService.enabled" "networking.istio.io/v1/VirtualService" "Istio 1.22 or later, or Cloud Service Mesh") }}
{{- end }}
{{- range $crds }}
{{- $value := index . 0 }}{{ $gvk := index . 1 }}{{ $from := index . 2 }}
{{- if not (include "mlflow.hasAPI" (list $ $gvk)) }}
{{- $errors = append $errors (printf "%s=true, but the cluster serves no %s %s; its CRD comes with %s. Install the CRD first, or set %s=false. helm template has no cluster to ask: pass --api-versions %s (Argo CD passes the cluster's API versions, so there the CRD is missing)" $value (dir $gvk) (base $gvk) $from $value $gvk) }}
{{- end }}
{{- end }}

{{- if $errors }}
{{- fail (printf "\n\nInvalid values for the mlflow chart:\n  - %s\n" (join "\n  - " $errors)) }}
{{- end }}
{{- end }}
