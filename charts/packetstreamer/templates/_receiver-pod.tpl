{{/*
The receiver's pod template, shared by the Deployment (one receiver,
receiver.replicas 1) and the StatefulSet (a tier, replicas > 1). The
differences in a tier: the captures volume comes from the StatefulSet's
volumeClaimTemplates (one claim per pod) when persistence is on, the files
are named after the pod (POD_NAME, PACKETSTREAMER_OUTPUT_FILE_PATH), the http
token Secret is always there (ps.httpTokenSecret), and without an affinity of
the user's the pods prefer different nodes.
*/}}
{{- define "ps.receiverPodTemplate" -}}
{{- $v := .Values.receiver -}}
{{- $tier := include "ps.receiverTier" . -}}
metadata:
  labels:
    {{- include "ps.selectorLabels" (dict "ctx" $ "component" "receiver") | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "ps.receiverConfig" . | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "ps.receiverServiceAccountName" . }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: {{ $v.runAsUser }}
    runAsGroup: {{ $v.runAsUser }}
    fsGroup: {{ $v.runAsUser }}
    fsGroupChangePolicy: OnRootMismatch
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: receiver
      image: {{ include "ps.image" (dict "ctx" $ "component" "receiver") | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - receiver
        - --config
        - {{ include "ps.configDir" . }}/receiver.yaml
      {{- $s3secret := and $v.s3.enabled $v.s3.existingSecret }}
      {{- $token := include "ps.httpTokenSecret" . }}
      {{- $ownPath := and $tier (not (dig "output" "file" "path" "" $v.extraConfig)) }}
      {{- if or $token $v.extraEnv $s3secret $ownPath }}
      env:
        {{- if $ownPath }}
        # A tier: each receiver's files are named after its pod
        # (POD-STAMP-COUNTER.pcapng), so the tier's files never share a name,
        # in one S3 bucket and prefix or side by side after a download.
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: PACKETSTREAMER_OUTPUT_FILE_PATH
          value: {{ printf "%s/$(POD_NAME).%s" (trimSuffix "/" $v.capturesPath) (ternary "pcapng" "pcap" (eq $v.output.format "pcapng")) | quote }}
        {{- end }}
        {{- with $token }}
        - name: PACKETSTREAMER_HTTP_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: token
        {{- end }}
        {{- if $s3secret }}
        # S3 credentials: the standard AWS variables, from the Secret; the
        # config file never holds them.
        {{- range $key := list "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "AWS_SESSION_TOKEN" }}
        - name: {{ $key }}
          valueFrom:
            secretKeyRef:
              name: {{ $s3secret }}
              key: {{ $key }}
              {{- if eq $key "AWS_SESSION_TOKEN" }}
              optional: true
              {{- end }}
        {{- end }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      ports:
        - name: stream
          containerPort: {{ $v.streamPort }}
          protocol: TCP
        - name: http
          containerPort: {{ $v.httpPort }}
          protocol: TCP
      {{- if $v.livenessProbe.enabled }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml (omit $v.livenessProbe "enabled") | nindent 8 }}
      {{- end }}
      {{- if $v.readinessProbe.enabled }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        {{- toYaml (omit $v.readinessProbe "enabled") | nindent 8 }}
      {{- end }}
      securityContext:
        capabilities:
          drop: [ALL]
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        privileged: false
      {{- with $v.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: {{ include "ps.configDir" . }}/receiver.yaml
          subPath: receiver.yaml
          readOnly: true
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: {{ .Values.tls.mountPath }}
          readOnly: true
        {{- end }}
        {{- if .Values.auth.enabled }}
        - name: auth
          mountPath: {{ include "ps.authDir" . }}
          readOnly: true
        {{- end }}
        - name: captures
          mountPath: {{ $v.capturesPath }}
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "ps.receiverName" . }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "ps.receiverTLSSecret" . }}
        defaultMode: 0440
    {{- end }}
    {{- if .Values.auth.enabled }}
    - name: auth
      secret:
        secretName: {{ include "ps.authSecret" . }}
        defaultMode: 0440
    {{- end }}
    {{- if and $tier $v.persistence.enabled }}
    {{- /* captures: the StatefulSet's volumeClaimTemplates */}}
    {{- else }}
    - name: captures
      {{- if $v.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ default (include "ps.receiverName" .) $v.persistence.existingClaim }}
      {{- else }}
      emptyDir:
        sizeLimit: {{ $v.persistence.emptyDirSizeLimit }}
      {{- end }}
    {{- end }}
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 16Mi
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $v.affinity }}
  affinity:
    {{- toYaml $v.affinity | nindent 4 }}
  {{- else if $tier }}
  # A tier: receivers on different nodes when the cluster has room, so that
  # one node going away takes only its receiver's sensors with it.
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "ps.selectorLabels" (dict "ctx" $ "component" "receiver") | nindent 16 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
