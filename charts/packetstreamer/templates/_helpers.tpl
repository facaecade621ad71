{{/* Names ------------------------------------------------------------------ */}}
{{- define "ps.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ps.fullname" -}}
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

{{- define "ps.sensorName" -}}{{ include "ps.fullname" . | trunc 56 | trimSuffix "-" }}-sensor{{- end -}}
{{- define "ps.receiverName" -}}{{ include "ps.fullname" . | trunc 54 | trimSuffix "-" }}-receiver{{- end -}}

{{/* A receiver tier: receiver.replicas > 1 runs the receivers as a
     StatefulSet behind a headless Service; "" for one receiver (Deployment). */}}
{{- define "ps.receiverTier" -}}
{{- if gt (int .Values.receiver.replicas) 1 -}}true{{- end -}}
{{- end -}}

{{/* The StatefulSet's name, also its pods' names and host names (NAME-0,
     NAME-1, ...: the receivers' tier.name). At most 52 characters: the
     controller-revision-hash label is NAME-HASH and must fit in 63. Equal to
     ps.receiverName for release names of ordinary length. */}}
{{- define "ps.receiverStatefulSetName" -}}{{ include "ps.fullname" . | trunc 43 | trimSuffix "-" }}-receiver{{- end -}}

{{/* The headless Service over the tier's pods: one DNS name that resolves to
     every ready receiver (a DNS-1035 label, at most 63). */}}
{{- define "ps.receiverHeadlessName" -}}{{ include "ps.fullname" . | trunc 45 | trimSuffix "-" }}-receiver-headless{{- end -}}

{{- define "ps.receiverHeadlessFQDN" -}}
{{- printf "%s.%s.svc.%s" (include "ps.receiverHeadlessName" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* The Secret holding the receivers' http.token (key `token`):
     receiver.httpTokenSecret, or in a tier the one the chart generates (the
     receivers ask each other for /api/sensors with it); "" for none. */}}
{{- define "ps.httpTokenSecret" -}}
{{- if .Values.receiver.httpTokenSecret -}}
{{- .Values.receiver.httpTokenSecret -}}
{{- else if include "ps.receiverTier" . -}}
{{- include "ps.fullname" . | trunc 52 | trimSuffix "-" }}-http-token
{{- end -}}
{{- end -}}

{{/* The sensor's and the receiver's ServiceAccounts: separate, so the pod
     RBAC belongs to the sensor alone and an IRSA role to the receiver alone. */}}
{{- define "ps.sensorServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ps.sensorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ps.receiverServiceAccountName" -}}
{{- if .Values.receiver.serviceAccount.create -}}
{{- default (include "ps.receiverName" .) .Values.receiver.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.receiver.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when the sensor discovers pods through the Kubernetes API
     (sensor.kubernetes.enabled auto or true: a sensor in a pod is in a
     cluster, so auto means on); "" when it is off. Decides the RBAC objects,
     the token mount and the rendered kubernetes/capture.pods keys. */}}
{{- define "ps.sensorKubernetes" -}}
{{- if ne (toString .Values.sensor.kubernetes.enabled) "false" -}}true{{- end -}}
{{- end -}}

{{/* The receiver Service's DNS names, most specific last. */}}
{{- define "ps.receiverFQDN" -}}
{{- printf "%s.%s.svc.%s" (include "ps.receiverName" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "ps.receiverDNSNames" -}}
{{- $svc := include "ps.receiverName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (include "ps.receiverFQDN" .) -}}
{{- if include "ps.receiverTier" . -}}
{{- /* A tier: sensors dial the headless Service's name (and verify it);
       the wildcard covers each pod's own name, POD.HEADLESS.NS.svc.DOMAIN. */ -}}
{{- $h := include "ps.receiverHeadlessName" . -}}
{{- $hf := include "ps.receiverHeadlessFQDN" . -}}
{{- $names = concat $names (list $h (printf "%s.%s" $h $ns) (printf "%s.%s.svc" $h $ns) $hf (printf "*.%s" $hf)) -}}
{{- end -}}
{{- concat $names .Values.tls.generate.extraDnsNames | uniq | toJson -}}
{{- end -}}

{{/* Where sensors stream to: the chart's receiver (in a tier, the headless
     Service's name: each sensor picks its home among its addresses by
     rendezvous hashing), or extraConfig's address. */}}
{{- define "ps.receiverAddress" -}}
{{- $own := include "ps.receiverFQDN" . -}}
{{- if include "ps.receiverTier" . }}{{ $own = include "ps.receiverHeadlessFQDN" . }}{{ end -}}
{{- dig "output" "server" "address" $own .Values.sensor.extraConfig -}}
{{- end -}}

{{- define "ps.serverName" -}}
{{- default (include "ps.receiverAddress" .) .Values.tls.serverName -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------- */}}
{{- define "ps.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "ps.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: packetstreamer
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "sensor") */}}
{{- define "ps.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ps.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ps.componentLabels" -}}
{{ include "ps.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images ----------------------------------------------------------------- */}}
{{- define "ps.image" -}}
{{- $img := index .ctx.Values.image .component -}}
{{- $repo := $img.repository -}}
{{- if .ctx.Values.image.registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" .ctx.Values.image.registry) $repo -}}{{- end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .ctx.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* TLS Secrets: every mode yields these two names, keys tls.crt tls.key ca.crt */}}
{{- define "ps.receiverTLSSecret" -}}
{{- if eq .Values.tls.mode "existingSecret" -}}
{{- required "tls.existingSecret.receiver is required when tls.mode is existingSecret" .Values.tls.existingSecret.receiver -}}
{{- else -}}
{{- include "ps.receiverName" . }}-tls
{{- end -}}
{{- end -}}

{{- define "ps.sensorTLSSecret" -}}
{{- if eq .Values.tls.mode "existingSecret" -}}
{{- required "tls.existingSecret.sensor is required when tls.mode is existingSecret" .Values.tls.existingSecret.sensor -}}
{{- else -}}
{{- include "ps.sensorName" . }}-tls
{{- end -}}
{{- end -}}

{{- define "ps.authSecret" -}}
{{- default (printf "%s-auth" (include "ps.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* Paths inside the containers */}}
{{- define "ps.configDir" -}}/etc/packetstreamer{{- end -}}
{{- define "ps.authDir" -}}/etc/packetstreamer/auth{{- end -}}

{{/*
Configuration files, rendered from values as a dict and serialised once, so
each key exists in exactly one place. Keys follow docs/configuration.md.
Keys marked (pending #N) are being added by the issue named; the
packaging check knows them (packaging/check_chart.py PENDING_KEYS).
*/}}
{{- define "ps.sensorConfig" -}}
{{- $v := .Values.sensor -}}
{{- $capture := dict "podInterfaces" $v.capture.podInterfaces "bufferSizeMB" (int $v.capture.bufferSizeMB) -}}{{/* pending #3 */}}
{{- if $v.capture.promiscuous }}{{ $_ := set $capture "promiscuous" true }}{{ end -}}
{{- if eq (default "continuous" $v.capture.mode) "ondemand" }}{{ $_ := set $capture "mode" "ondemand" }}{{ with $v.capture.recorder }}{{ $_ := set $capture "recorder" (dict "seconds" (int (default 30 .seconds)) "sizeMB" (int (default 64 .sizeMB))) }}{{ end }}{{ end -}}
{{- with $v.capture.interfaces }}{{ $_ := set $capture "interfaces" . }}{{ end -}}
{{- with $v.capture.excludeInterfaces }}{{ $_ := set $capture "excludeInterfaces" . }}{{ end -}}
{{- with $v.capture.filter }}{{ $_ := set $capture "filter" . }}{{ end -}}
{{- $cfg := dict
  "output" (dict "server" (dict "address" (include "ps.receiverAddress" .) "port" (int .Values.receiver.streamPort)))
  "capture" $capture
  "pcapMode" $v.capture.pcapMode
  "inputPacketLen" (int $v.capture.snaplen)
  "compression" (dict "codec" $v.codec)
  "compressBlockSize" (int $v.compressBlockSize)
  "gatherMaxWaitSec" (int $v.gatherMaxWaitSec)
  "spool" (dict "size" (int $v.spoolSizeMB))
  "http" (dict "listen" (printf "%s:%d" $v.http.address (int $v.http.port)))
  "log" (dict "level" $v.logLevel "format" $v.logFormat)
-}}
{{- with $v.capture.capturePorts }}{{ $_ := set $cfg "capturePorts" . }}{{ end -}}
{{- /* Pod discovery and selection (pending #14). enabled is rendered even
       when auto so the file says what the chart chose; the node name comes
       from NODE_NAME (downward API), the API server, token and CA from the
       in-cluster defaults. An empty excludeNamespaces is rendered as [] so it
       overrides the binary's default (kube-system). */ -}}
{{- $_ := set $cfg "kubernetes" (dict "enabled" $v.kubernetes.enabled) -}}
{{- if include "ps.sensorKubernetes" . -}}
{{- $pods := dict "excludeNamespaces" (default (list) $v.pods.excludeNamespaces) -}}
{{- with $v.pods.namespaces }}{{ $_ := set $pods "namespaces" . }}{{ end -}}
{{- with $v.pods.labelSelector }}{{ $_ := set $pods "labelSelector" . }}{{ end -}}
{{- $_ := set $capture "pods" $pods -}}
{{- end -}}
{{- with $v.capture.ignorePorts }}{{ $_ := set $cfg "ignorePorts" . }}{{ end -}}
{{- if .Values.tls.enabled -}}
{{- $dir := .Values.tls.mountPath -}}
{{- $_ := set $cfg "tls" (dict
    "enable" true
    "certFile" (printf "%s/tls.crt" $dir)
    "keyFile" (printf "%s/tls.key" $dir)
    "caFile" (printf "%s/ca.crt" $dir)
    "serverName" (include "ps.serverName" .)) -}}
{{- end -}}
{{- if .Values.auth.enabled -}}
{{- $_ := set $cfg "auth" (dict "enable" true "keyFile" (printf "%s/key" (include "ps.authDir" .))) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $v.extraConfig)) -}}
{{- end -}}

{{- define "ps.receiverConfig" -}}
{{- $v := .Values.receiver -}}
{{- $o := $v.output -}}
{{- $cfg := dict
  "input" (dict "address" "0.0.0.0" "port" (int $v.streamPort))
  "output" (dict "file" (dict
      "path" $v.capturesPath
      "format" $o.format
      "rotateSizeMB" (int $o.rotateSizeMB)
      "rotateSeconds" (int $o.rotateSeconds)
      "maxFiles" (int $o.maxFiles)
      "maxTotalSizeMB" (int $o.maxTotalSizeMB)
      "perSensor" $o.perSensor))
  "http" (dict "listen" (printf "0.0.0.0:%d" (int $v.httpPort)))
  "log" (dict "level" $v.logLevel "format" $v.logFormat)
-}}
{{- /* Upload of closed files to S3 (pending #17). Credentials never appear
       here: they come from the environment (receiver.s3.existingSecret) or
       from IRSA (receiver.serviceAccount.annotations). */ -}}
{{- $s3 := $v.s3 -}}
{{- if $s3.enabled -}}
{{- $o3 := dict
    "enabled" true
    "bucket" (required "receiver.s3.bucket is required when receiver.s3.enabled is true" $s3.bucket)
    "pathStyle" $s3.pathStyle
    "sse" $s3.sse
    "partSizeMB" (int $s3.partSizeMB)
    "deleteLocal" $s3.deleteLocal
    "cacheMB" (int $s3.cacheMB) -}}
{{- range $k := list "endpoint" "region" "prefix" "storageClass" "sseKmsKeyId" "stsEndpoint" -}}
{{- with index $s3 $k }}{{ $_ := set $o3 $k . }}{{ end -}}
{{- end -}}
{{- $_ := set $cfg.output "s3" $o3 -}}
{{- end -}}
{{- /* A tier: every receiver asks the others (the headless Service's
       addresses, HTTP port) for their sensors, with http.token
       (PACKETSTREAMER_HTTP_TOKEN from ps.httpTokenSecret); tier.name is the
       host name, the StatefulSet pod's name. */ -}}
{{- if include "ps.receiverTier" . -}}
{{- $_ := set $cfg "tier" (dict "peers" (printf "%s:%d" (include "ps.receiverHeadlessFQDN" .) (int $v.httpPort))) -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $dir := .Values.tls.mountPath -}}
{{- $tls := dict
    "enable" true
    "certFile" (printf "%s/tls.crt" $dir)
    "keyFile" (printf "%s/tls.key" $dir) -}}
{{- /* The CA sensors' certificates must chain to; requireClientCert=false
       makes them optional (still verified when presented). */ -}}
{{- $_ := set $tls "caFile" (printf "%s/ca.crt" $dir) -}}
{{- $_ := set $tls "clientCaFile" (printf "%s/ca.crt" $dir) -}}
{{- $_ := set $tls "requireClientCert" .Values.tls.requireClientCert -}}
{{- $_ := set $cfg "tls" $tls -}}
{{- end -}}
{{- if .Values.auth.enabled -}}
{{- $_ := set $cfg "auth" (dict "enable" true "keyFile" (printf "%s/key" (include "ps.authDir" .))) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $v.extraConfig)) -}}
{{- end -}}
