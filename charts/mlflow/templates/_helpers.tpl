{{/*
Naming. Every name fits its limit for any release name Helm accepts (up to 53 characters) and
any nameOverride/fullnameOverride the schema accepts (63): a name that is too long is cut and
ends in "-" and the first 8 hex digits of the sha256 of the whole name, so two long names that
share a prefix still differ. Limits: 63 for DNS labels (Services, label values: a Job's name is
copied into its pods' job-name labels); 52 for the StatefulSet, whose pods carry
controller-revision-hash=<name>-<up to 10 characters of hash>.
*/}}
{{/* Fit a name into a limit. Usage: include "mlflow.fit" (list "a-long-name" 63) */}}
{{- define "mlflow.fit" -}}
{{- $name := index . 0 }}{{ $limit := int (index . 1) }}
{{- if le (len $name) $limit }}
{{- $name }}
{{- else }}
{{- printf "%s-%s" ($name | trunc (int (sub $limit 9)) | trimSuffix "-") ($name | sha256sum | trunc 8) }}
{{- end }}
{{- end }}

{{- define "mlflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlflow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- include "mlflow.fit" (list .Values.fullnameOverride 63) }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- include "mlflow.fit" (list .Release.Name 63) }}
{{- else }}
{{- include "mlflow.fit" (list (printf "%s-%s" .Release.Name $name) 63) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A component's name, "<fullname>-<suffix>", within a limit (63 unless given). When it does not fit,
the full name is cut and hashed but the suffix is kept, so the name still says what it is.
Usage: include "mlflow.componentName" (list . "postgresql") or (list . "postgresql" 52)
*/}}
{{- define "mlflow.componentName" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $limit := 63 }}
{{- if gt (len .) 2 }}{{ $limit = int (index . 2) }}{{ end }}
{{- $full := include "mlflow.fullname" $ctx }}
{{- $name := printf "%s-%s" $full $suffix }}
{{- if le (len $name) $limit }}
{{- $name }}
{{- else }}
{{- printf "%s-%s-%s" ($full | trunc (int (sub $limit (add (len $suffix) 10))) | trimSuffix "-") ($name | sha256sum | trunc 8) $suffix }}
{{- end }}
{{- end }}

{{- define "mlflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name and instance only, since selectors are immutable. */}}
{{- define "mlflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlflow.labels" -}}
helm.sh/chart: {{ include "mlflow.chart" . }}
{{ include "mlflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlflow
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component. Usage: include "mlflow.componentLabels" (list . "server") */}}
{{- define "mlflow.componentLabels" -}}
{{ include "mlflow.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
Labels of one component that never change with the chart version or appVersion (no helm.sh/chart,
no app.kubernetes.io/version), for pod templates that must not roll on a chart upgrade.
Usage: include "mlflow.stableLabels" (list . "postgresql")
*/}}
{{- define "mlflow.stableLabels" -}}
{{- $root := index . 0 }}
{{- include "mlflow.componentSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: mlflow
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector of one component. Usage: include "mlflow.componentSelectorLabels" (list . "server") */}}
{{- define "mlflow.componentSelectorLabels" -}}
{{ include "mlflow.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "mlflow.annotations" -}}
{{- with .Values.commonAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mlflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- tpl (default (include "mlflow.fullname" .) .Values.serviceAccount.name) . }}
{{- else }}
{{- tpl (default "default" .Values.serviceAccount.name) . }}
{{- end }}
{{- end }}

{{/* An image reference from {registry, repository, tag, digest}; a non-empty "registry" (global.imageRegistry) replaces the image's own. Usage: include "mlflow.imageRef" (dict "image" .Values.image "defaultTag" "x" "registry" .Values.global.imageRegistry) */}}
{{- define "mlflow.imageRef" -}}
{{- $img := .image }}
{{- $registry := default $img.registry .registry }}
{{- $ref := printf "%s/%s" (trimSuffix "/" $registry) $img.repository | trimPrefix "/" }}
{{- if $img.digest }}
{{- printf "%s@%s" $ref $img.digest }}
{{- else }}
{{- printf "%s:%s" $ref (default .defaultTag $img.tag) }}
{{- end }}
{{- end }}

{{- define "mlflow.image" -}}
{{- include "mlflow.imageRef" (dict "image" .Values.image "defaultTag" (printf "v%s-full" .Chart.AppVersion) "registry" (include "mlflow.globalImageRegistry" .)) }}
{{- end }}

{{/* global.imageRegistry, or "" (also when a parent chart passes no global block). */}}
{{- define "mlflow.globalImageRegistry" -}}
{{- (.Values.global | default dict).imageRegistry | default "" }}
{{- end }}

{{/*
A value that may hold a template (Bitnami's common.tplvalues.render): a string is rendered
through tpl as it is, anything else as its YAML. Usage:
  include "mlflow.tplvalues" (dict "value" .Values.server.extraContainers "context" $)
*/}}
{{- define "mlflow.tplvalues" -}}
{{- if typeIs "string" .value }}
{{- tpl .value .context }}
{{- else }}
{{- tpl (.value | toYaml) .context }}
{{- end }}
{{- end }}

{{- define "mlflow.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Service and the names a client inside the cluster reaches it by. */}}
{{- define "mlflow.serviceName" -}}
{{- include "mlflow.fullname" . }}
{{- end }}

{{- define "mlflow.serviceHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "mlflow.serviceName" .) .Release.Namespace }}
{{- end }}

{{- define "mlflow.scriptsName" -}}
{{- include "mlflow.componentName" (list . "scripts") }}
{{- end }}

{{- define "mlflow.configName" -}}
{{- include "mlflow.componentName" (list . "config") }}
{{- end }}

{{- define "mlflow.authSecretName" -}}
{{- tpl (default (include "mlflow.componentName" (list . "auth")) .Values.auth.existingSecret) . }}
{{- end }}

{{- define "mlflow.cryptoKekSecretName" -}}
{{- tpl (default (include "mlflow.componentName" (list . "crypto")) .Values.server.cryptoKek.existingSecret) . }}
{{- end }}

{{/*
The server's AI Gateway encryption passphrase and its version (mlflow/utils/crypto.py reads
MLFLOW_CRYPTO_KEK_PASSPHRASE and MLFLOW_CRYPTO_KEK_VERSION, default 1). Server container only.
*/}}
{{- define "mlflow.cryptoKekEnv" -}}
{{- if .Values.server.cryptoKek.enabled }}
- name: MLFLOW_CRYPTO_KEK_PASSPHRASE
  valueFrom:
    secretKeyRef:
      name: {{ include "mlflow.cryptoKekSecretName" . | quote }}
      key: {{ .Values.server.cryptoKek.secretKey | quote }}
- name: MLFLOW_CRYPTO_KEK_VERSION
  value: {{ .Values.server.cryptoKek.version | quote }}
{{- end }}
{{- end }}

{{- define "mlflow.artifactsClaimName" -}}
{{- tpl (default (include "mlflow.componentName" (list . "artifacts")) .Values.artifacts.persistence.existingClaim) . }}
{{- end }}

{{/* ---------------------------------------------------------------- database ----- */}}

{{/* The StatefulSet, its Service and Secret: 52 characters, room for the revision hash label. */}}
{{- define "mlflow.postgresql.fullname" -}}
{{- include "mlflow.componentName" (list . "postgresql" 52) }}
{{- end }}

{{- define "mlflow.postgresql.secretName" -}}
{{- tpl (default (include "mlflow.postgresql.fullname" .) .Values.postgresql.auth.existingSecret) . }}
{{- end }}

{{- define "mlflow.postgresql.image" -}}
{{- include "mlflow.imageRef" (dict "image" .Values.postgresql.image "defaultTag" "17" "registry" (include "mlflow.globalImageRegistry" .)) }}
{{- end }}

{{- define "mlflow.cloudsql.image" -}}
{{- include "mlflow.imageRef" (dict "image" .Values.database.cloudsql.proxy.image "defaultTag" "2.20.0" "registry" (include "mlflow.globalImageRegistry" .)) }}
{{- end }}

{{/* The engine of the database MLflow talks to: postgres or mysql. */}}
{{- define "mlflow.db.engine" -}}
{{- if eq .Values.database.type "cloudsql" }}{{ .Values.database.cloudsql.engine }}
{{- else if eq .Values.database.type "external" }}{{ .Values.database.external.engine }}
{{- else }}postgres{{ end }}
{{- end }}

{{- define "mlflow.db.defaultPort" -}}
{{- if eq (include "mlflow.db.engine" .) "mysql" }}3306{{ else }}5432{{ end }}
{{- end }}

{{- define "mlflow.cloudsql.port" -}}
{{- default (include "mlflow.db.defaultPort" .) .Values.database.cloudsql.proxy.port }}
{{- end }}

{{/*
The Cloud SQL user. IAM database users are named after the Google service account:
PostgreSQL drops the ".gserviceaccount.com" suffix, MySQL keeps the part before "@".
*/}}
{{- define "mlflow.cloudsql.user" -}}
{{- $c := .Values.database.cloudsql }}
{{- if $c.user }}
{{- $c.user }}
{{- else if eq $c.auth "iam" }}
{{- $gsa := .Values.serviceAccount.gcpServiceAccount }}
{{- if eq $c.engine "mysql" }}{{ first (splitList "@" $gsa) }}{{ else }}{{ trimSuffix ".gserviceaccount.com" $gsa }}{{ end }}
{{- else }}mlflow
{{- end }}
{{- end }}

{{/* Where the password comes from: a (name, key) pair, or nothing (IAM auth). */}}
{{- define "mlflow.db.passwordSecret" -}}
{{- $t := .Values.database.type }}
{{- if eq $t "incluster" }}
{{- dict "name" (include "mlflow.postgresql.secretName" .) "key" .Values.postgresql.auth.secretKey | toJson }}
{{- else if and (eq $t "cloudsql") (eq .Values.database.cloudsql.auth "password") }}
{{- dict "name" (tpl .Values.database.cloudsql.existingSecret .) "key" .Values.database.cloudsql.secretKey | toJson }}
{{- else if and (eq $t "external") (not .Values.database.external.uriKey) }}
{{- dict "name" (tpl .Values.database.external.existingSecret .) "key" .Values.database.external.secretKey | toJson }}
{{- else }}
{{- dict | toJson }}
{{- end }}
{{- end }}

{{/*
The backend store URI, without the password. PostgreSQL drivers read the password from
PGPASSWORD, so it never has to be URL-encoded into the URI. PyMySQL has no such variable, so
for MySQL the kubelet expands $(MLFLOW_DB_PASSWORD) into the URI (the password must then be
URL-safe; the CLI generates such passwords). An explicit driver is named (a bare "postgresql://"
means psycopg 3 with SQLAlchemy 2.1 but psycopg2 before): database.postgresqlDriver.
*/}}
{{- define "mlflow.db.uri" -}}
{{- $t := .Values.database.type }}
{{- $engine := include "mlflow.db.engine" . }}
{{- $host := "" }}{{ $port := "" }}{{ $db := "" }}{{ $user := "" }}
{{- if eq $t "incluster" }}
{{- $host = printf "%s.%s.svc.cluster.local" (include "mlflow.postgresql.fullname" .) .Release.Namespace }}
{{- $port = "5432" }}{{ $db = .Values.postgresql.auth.database }}{{ $user = .Values.postgresql.auth.username }}
{{- else if eq $t "cloudsql" }}
{{- $host = "127.0.0.1" }}{{ $port = include "mlflow.cloudsql.port" . }}
{{- $db = .Values.database.cloudsql.database }}{{ $user = include "mlflow.cloudsql.user" . }}
{{- else }}
{{- $e := .Values.database.external }}
{{- $host = $e.host }}{{ $port = toString (default (include "mlflow.db.defaultPort" .) $e.port) }}
{{- $db = $e.database }}{{ $user = $e.user }}
{{- end }}
{{- $hasPassword := ne (include "mlflow.db.passwordSecret" . | fromJson | len) 0 }}
{{- if eq $engine "mysql" }}
{{- printf "mysql+pymysql://%s%s@%s:%s/%s?charset=utf8mb4" (urlquery $user) (ternary ":$(MLFLOW_DB_PASSWORD)" "" $hasPassword) $host $port $db }}
{{- else }}
{{- printf "postgresql+%s://%s@%s:%s/%s" .Values.database.postgresqlDriver (urlquery $user) $host $port $db }}
{{- end }}
{{- end }}

{{/*
Environment shared by every container that talks to the database: the server, the migration
Job and the schema wait. MLFLOW_BACKEND_STORE_URI is what `mlflow server` and our db script read.
*/}}
{{- define "mlflow.db.env" -}}
{{- $pw := include "mlflow.db.passwordSecret" . | fromJson }}
{{- if $pw.name }}
- name: MLFLOW_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $pw.name | quote }}
      key: {{ $pw.key | quote }}
{{- if eq (include "mlflow.db.engine" .) "postgres" }}
- name: PGPASSWORD
  value: "$(MLFLOW_DB_PASSWORD)"
{{- end }}
{{- end }}
{{- if and (eq .Values.database.type "external") .Values.database.external.uriKey }}
- name: MLFLOW_BACKEND_STORE_URI
  valueFrom:
    secretKeyRef:
      name: {{ tpl .Values.database.external.existingSecret . | quote }}
      key: {{ .Values.database.external.uriKey | quote }}
{{- else }}
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ include "mlflow.db.uri" . | quote }}
{{- end }}
- name: MLFLOW_SQLALCHEMYSTORE_POOL_SIZE
  value: {{ .Values.database.pool.size | quote }}
- name: MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW
  value: {{ .Values.database.pool.maxOverflow | quote }}
- name: MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE
  value: {{ .Values.database.pool.recycleSeconds | quote }}
{{- end }}

{{/* Environment common to every MLflow-image container. */}}
{{- define "mlflow.commonEnv" -}}
- name: HOME
  value: /home/mlflow
- name: USER
  value: mlflow
- name: TMPDIR
  value: /tmp
- name: PYTHONUNBUFFERED
  value: "1"
{{- if not .Values.server.telemetry }}
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
- name: DO_NOT_TRACK
  value: "true"
{{- end }}
{{- end }}

{{/*
The Cloud SQL Auth Proxy as a native sidecar: an init container that keeps running.
Given the root context; or (dict "root" . "password" true) for the one-time grant Job, which
logs in as a built-in user with a password and so runs the proxy without --auto-iam-authn.
*/}}
{{- define "mlflow.cloudsql.sidecar" -}}
{{- $withPassword := false }}
{{- if hasKey . "password" }}{{ $withPassword = .password }}{{ end }}
{{- $root := . }}
{{- if hasKey . "root" }}{{ $root = .root }}{{ end }}
{{- with $root }}
{{- $c := .Values.database.cloudsql }}
- name: cloud-sql-proxy
  image: {{ include "mlflow.cloudsql.image" . | quote }}
  imagePullPolicy: {{ $c.proxy.image.pullPolicy }}
  restartPolicy: Always
  args:
    - --address=127.0.0.1
    - --port={{ include "mlflow.cloudsql.port" . }}
    - --health-check
    - --http-address=0.0.0.0
    - --http-port={{ $c.proxy.httpPort }}
    - --exit-zero-on-sigterm
    - --max-sigterm-delay={{ $c.proxy.maxSigtermDelay }}
    - --structured-logs
    {{- if and (eq $c.auth "iam") (not $withPassword) }}
    - --auto-iam-authn
    {{- end }}
    {{- if eq $c.ipType "private" }}
    - --private-ip
    {{- else if eq $c.ipType "psc" }}
    - --psc
    {{- end }}
    {{- range $c.proxy.extraArgs }}
    - {{ . | quote }}
    {{- end }}
    - {{ $c.instanceConnectionName | quote }}
  ports:
    - name: proxy-health
      containerPort: {{ $c.proxy.httpPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /startup
      port: proxy-health
    periodSeconds: 1
    timeoutSeconds: 5
    failureThreshold: 60
  livenessProbe:
    httpGet:
      path: /liveness
      port: proxy-health
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 3
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml $c.proxy.resources | nindent 4 }}
{{- end }}
{{- end }}

{{/* Pod volumes every MLflow-image pod has: writable scratch space and our scripts. */}}
{{- define "mlflow.scratchVolumes" -}}
- name: tmp
  emptyDir: {}
{{ include "mlflow.homeAndScriptsVolumes" . }}
{{- end }}

{{/*
The server's /tmp, where MLflow buffers every proxied artifact upload and download in full
(mlflow/server/handlers.py: _upload_artifact writes the request to a TemporaryDirectory before
log_artifact; _download_artifact downloads into one before sending it). An emptyDir counts as
the pod's ephemeral storage; a generic ephemeral volume is a PersistentVolumeClaim made and
deleted with the pod, outside that budget (server.tmp).
*/}}
{{- define "mlflow.server.tmpVolume" -}}
{{- $tmp := .Values.server.tmp }}
- name: tmp
{{- if eq $tmp.type "ephemeral" }}
  ephemeral:
    volumeClaimTemplate:
      metadata:
        labels:
          {{- include "mlflow.componentSelectorLabels" (list . "server") | nindent 10 }}
      spec:
        accessModes:
          - ReadWriteOnce
        {{- with $tmp.ephemeral.storageClassName }}
        storageClassName: {{ . | quote }}
        {{- end }}
        resources:
          requests:
            storage: {{ $tmp.ephemeral.size | quote }}
{{- else if $tmp.sizeLimit }}
  emptyDir:
    sizeLimit: {{ $tmp.sizeLimit | quote }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}

{{- define "mlflow.homeAndScriptsVolumes" -}}
- name: home
  emptyDir: {}
- name: scripts
  configMap:
    name: {{ include "mlflow.scriptsName" . }}
    defaultMode: 0555
{{- end }}

{{- define "mlflow.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/mlflow
- name: scripts
  mountPath: /opt/mlflow-helm
  readOnly: true
{{- end }}

{{/*
"true" when the cluster serves a custom resource API, given as "group/version/Kind" (or "").
A cluster's API list (helm install/upgrade) holds both "group/version" and
"group/version/Kind"; `helm template --api-versions X` adds only X, and Argo CD passes the
cluster's group/versions without kinds (argoproj/argo-cd#6351), so either form counts.
Usage: include "mlflow.hasAPI" (list $ "monitoring.coreos.com/v1/ServiceMonitor")
*/}}
{{- define "mlflow.hasAPI" -}}
{{- $root := index . 0 }}{{ $gvk := index . 1 }}
{{- if or ($root.Capabilities.APIVersions.Has $gvk) ($root.Capabilities.APIVersions.Has (dir $gvk)) }}true{{ end }}
{{- end }}

{{/* The server's path prefix ("" or "/prefix"). */}}
{{- define "mlflow.prefix" -}}
{{- .Values.server.staticPrefix | trimSuffix "/" }}
{{- end }}

{{/*
Host header values the server accepts. Setting --allowed-hosts replaces MLflow's defaults, so
they are repeated here (localhost and loopback with any port, private address ranges, as
mlflow.server.security_utils.get_default_allowed_hosts builds them), then the Service's DNS
names with and without the port, the hosts of every enabled route, and the user's extras.
A bare "*" route host is not added: it would turn the check off.
*/}}
{{- define "mlflow.allowedHosts" -}}
{{- $hosts := list "localhost" "127.0.0.1" "[::1]" "0.0.0.0" "localhost:*" "127.0.0.1:*" "[[]::1]:*" "0.0.0.0:*" "192.168.*" "10.*" }}
{{- range $i := untilStep 16 32 1 }}
{{- $hosts = append $hosts (printf "172.%d.*" $i) }}
{{- end }}
{{- $hosts = concat $hosts (list "fc00:*" "fd00:*") }}
{{- $svc := include "mlflow.serviceName" . }}
{{- $ns := .Release.Namespace }}
{{- $port := .Values.service.port }}
{{- range $name := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- $hosts = concat $hosts (list $name (printf "%s:%v" $name $port)) }}
{{- end }}
{{- if .Values.ingress.enabled }}
{{- range .Values.ingress.hosts }}{{ if .host }}{{ $hosts = append $hosts .host }}{{ end }}{{ end }}
{{- end }}
{{- if .Values.httpRoute.enabled }}
{{- range .Values.httpRoute.hostnames }}{{ $hosts = append $hosts . }}{{ end }}
{{- end }}
{{- if .Values.virtualService.enabled }}
{{- range .Values.virtualService.hosts }}{{ $hosts = append $hosts . }}{{ end }}
{{- end }}
{{- $hosts = concat $hosts .Values.server.allowedHosts.extra }}
{{- with .Values.server.allowedHosts.podCIDRs }}
{{- $hosts = concat $hosts (include "mlflow.cidrHostPatterns" . | splitList "," | compact) }}
{{- end }}
{{- without ($hosts | uniq) "*" | join "," }}
{{- end }}

{{/*
Host header patterns (MLflow matches them with Python's fnmatch) for the addresses of CIDRs,
so a request by pod IP (a scrape, a probe) passes the host check on pod ranges outside MLflow's
defaults. Such a request goes to the container's port, so its Host is "ADDRESS:5000"
("[ADDRESS]:5000" for IPv6); only that form is added.
IPv4: the prefix is widened to whole octets by listing every value of the last, partial one
(100.64.0.0/10 gives 100.64 to 100.127), each as "A.B.*[0-9]:5000": a digit before the port,
unlike MLflow's own "10.*", so a DNS name such as 100.64.example.com does not match.
IPv6 (checked by mlflow.validate: a 16-bit boundary, no zero group in the prefix, so the
address's canonical RFC 5952 text starts with those groups): "[[]G1:G2:*]:5000", "[[]" being
fnmatch's escape for "[".
Usage: include "mlflow.cidrHostPatterns" (list "100.64.0.0/10" ...) -> comma-separated patterns
*/}}
{{- define "mlflow.cidrHostPatterns" -}}
{{- $out := list }}
{{- range $cidr := . }}
{{- $addr := first (splitList "/" $cidr) }}{{ $bits := int (last (splitList "/" $cidr)) }}
{{- if contains ":" $addr }}
{{- $groups := splitList ":" (first (splitList "::" (lower $addr))) }}
{{- $prefix := list }}
{{- range $i := until (int (div $bits 16)) }}
{{- $prefix = append $prefix (regexReplaceAll "^0+(.)" (index $groups $i) "${1}") }}
{{- end }}
{{- $out = append $out (printf "[[]%s:*]:5000" (join ":" $prefix)) }}
{{- else }}
{{- $octets := splitList "." $addr }}
{{- $k := int (div (add $bits 7) 8) }}
{{- $count := 1 }}
{{- range until (int (sub (mul $k 8) $bits)) }}{{ $count = mul $count 2 }}{{ end }}
{{- $last := int (index $octets (int (sub $k 1))) }}
{{- $base := mul (div $last $count) $count }}
{{- range $v := untilStep (int $base) (int (add $base $count)) 1 }}
{{- $p := join "." (append (slice $octets 0 (int (sub $k 1))) (toString $v)) }}
{{- $out = append $out (printf (ternary "%s:5000" "%s.*[0-9]:5000" (eq $k 4)) $p) }}
{{- end }}
{{- end }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/*
Who the scrapes log in as when auth.enabled (MLflow's basic auth guards /metrics too):
metrics.basicAuth, else the admin from the auth Secret. A dict: username, secret, key.
*/}}
{{- define "mlflow.metricsAuth" -}}
{{- $b := .Values.metrics.basicAuth }}
{{- $d := dict "username" (default .Values.auth.adminUsername $b.username) }}
{{- if $b.existingSecret }}
{{- $_ := set $d "secret" (tpl $b.existingSecret .) }}{{ $_ := set $d "key" $b.passwordKey }}
{{- else }}
{{- $_ := set $d "secret" (include "mlflow.authSecretName" .) }}{{ $_ := set $d "key" .Values.auth.passwordKey }}
{{- end }}
{{- toYaml $d }}
{{- end }}

{{/*
A generated secret value, the same in every template of one render: an existing Secret's value
(lookup, so upgrades keep it), else a new random one, remembered on the root context so that the
Secret and the pods' checksum annotation see the same value.
Usage: include "mlflow.generatedSecret" (list $ secretName key length) -> base64 value
*/}}
{{- define "mlflow.generatedSecret" -}}
{{- $root := index . 0 }}{{ $name := index . 1 }}{{ $key := index . 2 }}{{ $length := index . 3 }}
{{- $cache := get $root "mlflowGeneratedSecrets" | default dict }}
{{- $id := printf "%s/%s" $name $key }}
{{- if not (hasKey $cache $id) }}
{{- $existing := (lookup "v1" "Secret" $root.Release.Namespace $name).data | default dict }}
{{- $_ := set $cache $id (index $existing $key | default (randAlphaNum (int $length) | b64enc)) }}
{{- $_ := set $root "mlflowGeneratedSecrets" $cache }}
{{- end }}
{{- index $cache $id }}
{{- end }}

{{/*
The migration Job's name: "<fullname>-migrate-<hash>", the hash of what the Job migrates to (the
image reference, the chart version) and of the Job's own spec, never the release revision. So
`helm template` gives the same name every time (GitOps), and a new image, chart or Job spec gets a
new Job: a Job's pod template is immutable and a finished Job never runs again, so reusing the
name for a different Job would fail the upgrade or skip the migration. The spec is that of the
rendered job-migrate.yaml (rendered once more here, with the name left out so it cannot recurse).
A long full name is cut before the suffix, never the hash.
*/}}
{{- define "mlflow.migrateJobName" -}}
{{- if hasKey . "mlflowMigrateJobProbe" }}
{{- "probe" }}
{{- else if hasKey . "mlflowMigrateJobName" }}
{{- get . "mlflowMigrateJobName" }}
{{- else }}
{{- $_ := set . "mlflowMigrateJobProbe" true }}
{{- $spec := include (print .Template.BasePath "/job-migrate.yaml") . | fromYaml | dig "spec" dict }}
{{- $_ := unset . "mlflowMigrateJobProbe" }}
{{- $hash := list (include "mlflow.image" .) .Chart.Version $spec | toJson | sha256sum | trunc 10 }}
{{- $name := include "mlflow.componentName" (list . (printf "migrate-%s" $hash)) }}
{{- $_ := set . "mlflowMigrateJobName" $name }}
{{- $name }}
{{- end }}
{{- end }}

{{/*
The migration Job's annotations: the common ones, migrations.jobAnnotations, and with
migrations.argocd.hook the Argo CD hook annotations. Argo CD maps helm.sh/hook annotations
itself (pre-install/pre-upgrade to PreSync), but the Job is no Helm hook (see job-migrate.yaml);
an argocd.argoproj.io/hook annotation makes Argo CD ignore any Helm hook annotation on the same
object (Argo CD docs, user-guide/helm.md, "Helm Hooks"; gitops-engine pkg/sync/hook/hook.go,
Types: Helm hook types are read only when the object has no Argo CD one).
*/}}
{{/* The one-time grant Job's name (job-db-grant.yaml); the CLI waits for it by this name. */}}
{{- define "mlflow.grantJobName" -}}
{{- printf "%s-db-grant" (include "mlflow.fit" (list (include "mlflow.fullname" .) 52)) }}
{{- end }}

{{- define "mlflow.migrateJobAnnotations" -}}
{{- $out := dict }}
{{- with .Values.commonAnnotations }}{{ $out = merge $out . }}{{ end }}
{{- with .Values.migrations.jobAnnotations }}{{ $out = mergeOverwrite $out . }}{{ end }}
{{- with .Values.migrations.argocd.hook }}
{{- $_ := set $out "argocd.argoproj.io/hook" . }}
{{- $_ := set $out "argocd.argoproj.io/hook-delete-policy" $.Values.migrations.argocd.hookDeletePolicy }}
{{- end }}
{{- with $out }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* A memory quantity in bytes (float), for comparisons: "2Gi", "512Mi", "3G", "1000000". */}}
{{- define "mlflow.bytes" -}}
{{- $q := toString . }}
{{- $units := dict "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "k" 1000.0 "K" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 }}
{{- $number := regexFind "^[0-9.]+" $q }}
{{- $unit := trimPrefix $number $q }}
{{- mulf (float64 $number) (get $units $unit | default 1.0) }}
{{- end }}

{{/* "true" when the server's NetworkPolicy admits Google's load balancers and health checkers
(asked for, or implied by gcpLoadBalancer.enabled). */}}
{{- define "mlflow.admitsGoogleLoadBalancers" -}}
{{- if or .Values.networkPolicy.allowGoogleLoadBalancers .Values.gcpLoadBalancer.enabled }}true{{ end }}
{{- end }}

{{/* "true" when a route (Ingress, HTTPRoute, VirtualService) or a Google load balancer fronts
the server. */}}
{{- define "mlflow.routed" -}}
{{- if or .Values.ingress.enabled .Values.httpRoute.enabled .Values.virtualService.enabled .Values.gcpLoadBalancer.enabled }}true{{ end }}
{{- end }}

{{/*
Seconds the server keeps serving once its pod is marked for deletion: endpoint removal reaches
kube-proxy, the NEG controller and the load balancer some seconds after the pod is marked, and
requests sent meanwhile must still be answered.
*/}}
{{- define "mlflow.preStopSleep" -}}
{{- $s := .Values.server.preStopSleepSeconds }}
{{- if kindIs "invalid" $s }}
{{- $s = ternary 15 (ternary 5 0 (eq (include "mlflow.routed" .) "true")) .Values.gcpLoadBalancer.enabled }}
{{- end }}
{{- int $s }}
{{- end }}

{{/* The pod's grace period: the preStop drain, then the in-flight requests' time (at least the
load balancer's connection draining, which waits for them). */}}
{{- define "mlflow.terminationGrace" -}}
{{- $inFlight := int .Values.server.terminationGracePeriodSeconds }}
{{- if .Values.gcpLoadBalancer.enabled }}{{ $inFlight = max $inFlight (int .Values.gcpLoadBalancer.drainingTimeoutSec) }}{{ end }}
{{- add (int (include "mlflow.preStopSleep" .)) $inFlight }}
{{- end }}

{{/*
Options for uvicorn (`mlflow server --uvicorn-opts`): the keep-alive and the trusted proxies the
chart derives, then server.uvicornOpts (uvicorn's click options: the last occurrence wins, so
the user's own override the chart's).
*/}}
{{- define "mlflow.uvicornOpts" -}}
{{- $opts := list }}
{{- $keepAlive := .Values.server.keepAliveTimeout }}
{{- if and (kindIs "invalid" $keepAlive) (include "mlflow.routed" .) }}{{ $keepAlive = 620 }}{{ end }}
{{- if not (kindIs "invalid" $keepAlive) }}
{{- $opts = append $opts (printf "--timeout-keep-alive %d" (int $keepAlive)) }}
{{- end }}
{{- $trusted := list }}
{{- if .Values.gcpLoadBalancer.enabled }}
{{- /* Google's front ends (global external ALB) and health checkers, and the proxy-only
subnets regional and internal ALBs connect from. */}}
{{- $trusted = concat (list "35.191.0.0/16" "130.211.0.0/22") .Values.networkPolicy.proxyOnlySubnets .Values.gcpLoadBalancer.loadBalancerAddresses }}
{{- end }}
{{- $trusted = concat $trusted .Values.server.forwardedAllowIps | uniq }}
{{- with $trusted }}
{{- $opts = append $opts (printf "--forwarded-allow-ips %s" (join "," .)) }}
{{- end }}
{{- with .Values.server.uvicornOpts }}{{ $opts = append $opts . }}{{ end }}
{{- join " " $opts }}
{{- end }}

{{/*
Backups before migrating (migrations.backup): "off" (opted out), "cloudsql" (the instance's
on-demand backup named in values) or "dump" (a logical dump by the Job's backup init container).
*/}}
{{- define "mlflow.migrateBackup.mode" -}}
{{- if not .Values.migrations.backup.enabled }}off
{{- else if eq .Values.database.type "cloudsql" }}cloudsql
{{- else }}dump{{ end }}
{{- end }}

{{/* Where a dump goes: gcs or volume. */}}
{{- define "mlflow.migrateBackup.destination" -}}
{{- $d := .Values.migrations.backup.destination }}
{{- if eq $d "auto" }}{{ ternary "gcs" "volume" (eq .Values.artifacts.type "gcs") }}
{{- else }}{{ $d }}{{ end }}
{{- end }}

{{/* gs://bucket/prefix/namespace/release: the release's backups in GCS (backups.gcs). */}}
{{- define "mlflow.backups.gcsUrl" -}}
{{- $g := .Values.backups.gcs }}
{{- $bucket := $g.bucket | default .Values.artifacts.gcs.bucket }}
{{- printf "gs://%s/%s" $bucket (compact (list (trimAll "/" $g.prefix) .Release.Namespace .Release.Name) | join "/") }}
{{- end }}

{{/* The client image of the dump: the in-cluster PostgreSQL's own, or the engine's. */}}
{{- define "mlflow.migrateBackup.image" -}}
{{- if eq .Values.database.type "incluster" }}{{ include "mlflow.postgresql.image" . }}
{{- else }}
{{- $image := ternary .Values.migrations.backup.mysqlImage .Values.migrations.backup.postgresqlImage (eq (include "mlflow.db.engine" .) "mysql") }}
{{- include "mlflow.imageRef" (dict "image" $image "defaultTag" "latest" "registry" (include "mlflow.globalImageRegistry" .)) }}
{{- end }}
{{- end }}

{{/*
"true" when the release has the backup volume (backups.persistence): for the scheduled dumps
of the in-cluster PostgreSQL, or for the dumps before migrating when they go to a volume.
*/}}
{{- define "mlflow.backupVolume.enabled" -}}
{{- $scheduled := and (eq .Values.database.type "incluster") .Values.postgresql.backup.enabled (eq .Values.postgresql.backup.destination "volume") }}
{{- $migration := and (eq (include "mlflow.migrateBackup.mode" .) "dump") (eq (include "mlflow.migrateBackup.destination" .) "volume") }}
{{- if or $scheduled $migration }}true{{ end }}
{{- end }}

{{- define "mlflow.backupVolume.claim" -}}
{{- tpl (.Values.backups.persistence.existingClaim | default (include "mlflow.componentName" (list . "backups"))) . }}
{{- end }}
