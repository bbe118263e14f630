{{/* Labels on every object. */}}
{{- define "tp.labels" -}}
app.kubernetes.io/part-of: tiktok-pipeline
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The one image every entry point runs: repository:tag, or repository:tag@digest. */}}
{{- define "tp.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}
{{- if not (hasPrefix "sha256:" $i.digest) -}}{{- fail "image.digest must look like sha256:<hex>" -}}{{- end -}}
{{ $i.repository }}:{{ $i.tag }}@{{ $i.digest }}
{{- else -}}
{{ $i.repository }}:{{ required "image.tag is required" $i.tag }}
{{- end -}}
{{- end -}}

{{/* A topic name with the configured prefix: include "tp.topic" (list $ "tiktok.post.requested") */}}
{{- define "tp.topic" -}}
{{ (index . 0).Values.kafka.topicPrefix }}{{ index . 1 }}
{{- end -}}

{{/* Consumer groups (auth_service's is configured through AUTH_CONSUMER_GROUP, with the prefix). */}}
{{- define "tp.group.publish" -}}{{ .Values.kafka.topicPrefix }}publish_service{{- end -}}
{{- define "tp.group.auth" -}}{{ .Values.kafka.topicPrefix }}auth-service{{- end -}}

{{/* The Secret a service reads: existingSecret, else the placeholder template. */}}
{{- define "tp.secretName" -}}
{{- $root := index . 0 -}}{{- $svc := index . 1 -}}
{{- $existing := index $root.Values.existingSecret $svc -}}
{{- if $existing -}}{{ $existing }}{{- else if $root.Values.placeholderSecrets -}}{{ $svc }}-service-secrets
{{- else -}}{{- fail (printf "existingSecret.%s is required (or placeholderSecrets=true for a template to patch)" $svc) -}}
{{- end -}}
{{- end -}}

{{/* Strimzi KafkaUser names: the principals. */}}
{{- define "tp.kafkaUser" -}}
{{- $root := index . 0 -}}{{- $who := index . 1 -}}
{{- printf "%s-%s" $root.Release.Name $who | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tp.saslEnabled" -}}{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}true{{- end -}}{{- end -}}
{{- define "tp.tlsEnabled" -}}{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") -}}true{{- end -}}{{- end -}}

{{/* Kafka client env of one principal ("auth" or "publish"): include "tp.kafkaEnv" (list $ "publish") */}}
{{- define "tp.kafkaEnv" -}}
{{- $root := index . 0 -}}{{- $svc := index . 1 -}}
{{- $k := $root.Values.kafka -}}{{- $u := index $k.auth $svc -}}
{{- if include "tp.saslEnabled" $root }}
- name: KAFKA_SASL_USERNAME
  value: {{ $u.username | default (ternary (include "tp.kafkaUser" (list $root (printf "%s-service" $svc))) "" $root.Values.strimzi.enabled) | required (printf "kafka.auth.%s.username is required with SASL" $svc) | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $u.passwordSecret.name | default (ternary (include "tp.kafkaUser" (list $root (printf "%s-service" $svc))) "" $root.Values.strimzi.enabled) | required (printf "kafka.auth.%s.passwordSecret.name is required with SASL" $svc) }}
      key: {{ $u.passwordSecret.key }}
{{- end }}
{{- if and (include "tp.tlsEnabled" $root) $k.caSecret.name }}
- name: KAFKA_SSL_CAFILE
  value: /etc/tiktok-pipeline/kafka-ca/ca.crt
{{- end }}
{{- if and (include "tp.tlsEnabled" $root) (include "tp.certSecretName" (list $root $svc)) }}
- name: KAFKA_SSL_CERTFILE
  value: /etc/tiktok-pipeline/kafka-client/tls.crt
- name: KAFKA_SSL_KEYFILE
  value: /etc/tiktok-pipeline/kafka-client/tls.key
{{- end }}
{{- end -}}

{{- define "tp.kafkaMounts" -}}
{{- $root := index . 0 -}}{{- $svc := index . 1 -}}
{{- if and (include "tp.tlsEnabled" $root) $root.Values.kafka.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/tiktok-pipeline/kafka-ca
  readOnly: true
{{- end }}
{{- if and (include "tp.tlsEnabled" $root) (include "tp.certSecretName" (list $root $svc)) }}
- name: kafka-client-{{ $svc }}
  mountPath: /etc/tiktok-pipeline/kafka-client
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes for the Kafka CA and the client certificates of the given principals:
     include "tp.kafkaVolumes" (list $ "auth" "publish") */}}
{{- define "tp.kafkaVolumes" -}}
{{- $root := index . 0 -}}
{{- $k := $root.Values.kafka -}}
{{- if and (include "tp.tlsEnabled" $root) $k.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ $k.caSecret.name }}
    defaultMode: 0440
    items:
      - key: {{ $k.caSecret.key }}
        path: ca.crt
{{- end }}
{{- range $svc := rest . }}
{{- $u := index $k.auth $svc }}
{{- with and (include "tp.tlsEnabled" $root) (include "tp.certSecretName" (list $root $svc)) }}
- name: kafka-client-{{ $svc }}
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $u.certSecret.certKey }}
        path: tls.crt
      - key: {{ $u.certSecret.keyKey }}
        path: tls.key
{{- end }}
{{- end }}
{{- end -}}

{{/* The Secret with a principal's client certificate: certSecret, else the Strimzi KafkaUser's (tls). */}}
{{- define "tp.certSecretName" -}}
{{- $root := index . 0 -}}{{- $svc := index . 1 -}}
{{- $u := index $root.Values.kafka.auth $svc -}}
{{- if $u.certSecret.name -}}{{ $u.certSecret.name }}
{{- else if and $root.Values.strimzi.enabled (eq $root.Values.strimzi.authentication "tls") -}}
{{ include "tp.kafkaUser" (list $root (printf "%s-service" $svc)) }}
{{- end -}}
{{- end -}}

{{/* TIKTOK_CLIENT_KEY from the Secret when it is not given as a value. */}}
{{- define "tp.clientKeyEnv" -}}
{{- $root := index . 0 -}}{{- $svc := index . 1 -}}
{{- if not $root.Values.tiktok.clientKey }}
- name: TIKTOK_CLIENT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "tp.secretName" (list $root $svc) }}
      key: TIKTOK_CLIENT_KEY
{{- end }}
{{- end -}}

{{- define "tp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tp.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Probes on the http port: startup and liveness /healthz, readiness /readyz. */}}
{{- define "tp.probes" -}}
{{- $p := .Values.probes -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: {{ $p.startup.periodSeconds }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
{{- end -}}

{{- define "tp.topologySpread" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}
{{- range $root.Values.topologySpread }}
- {{ toYaml . | nindent 2 | trim }}
  labelSelector:
    matchLabels:
      app.kubernetes.io/name: {{ $name }}
{{- end }}
{{- end -}}

{{/* Checks run on every render. */}}
{{- define "tp.validate" -}}
{{- $k := .Values.kafka -}}
{{- if not (has $k.securityProtocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) -}}
{{- fail (printf "kafka.securityProtocol %q: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL" $k.securityProtocol) -}}
{{- end -}}
{{- if and (include "tp.saslEnabled" .) (not (has $k.saslMechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512"))) -}}
{{- fail (printf "kafka.saslMechanism %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with %s" $k.saslMechanism $k.securityProtocol) -}}
{{- end -}}
{{- if and (not (include "tp.saslEnabled" .)) $k.saslMechanism -}}
{{- fail (printf "kafka.saslMechanism is set but kafka.securityProtocol %s has no SASL" $k.securityProtocol) -}}
{{- end -}}
{{- if lt (int .Values.shutdownDeadlineSeconds) 1 -}}{{- fail "shutdownDeadlineSeconds must be positive" -}}{{- end -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (add .Values.shutdownDeadlineSeconds .Values.preStopSeconds | int) -}}
{{- fail "terminationGracePeriodSeconds must exceed shutdownDeadlineSeconds + preStopSeconds" -}}
{{- end -}}
{{- if and .Values.strimzi.enabled (not (has .Values.strimzi.authentication (list "scram-sha-512" "tls"))) -}}
{{- fail "strimzi.authentication: scram-sha-512 or tls" -}}
{{- end -}}
{{- if and .Values.strimzi.enabled (eq .Values.strimzi.authentication "scram-sha-512") (ne $k.saslMechanism "SCRAM-SHA-512") -}}
{{- fail "strimzi.authentication scram-sha-512 needs kafka.securityProtocol SASL_SSL (or SASL_PLAINTEXT) and kafka.saslMechanism SCRAM-SHA-512" -}}
{{- end -}}
{{- if and .Values.strimzi.enabled .Values.migrate.createTopics -}}
{{- fail "migrate.createTopics and strimzi.enabled both create the topics: the KafkaTopics own them, turn createTopics off" -}}
{{- end -}}
{{- if and .Values.strimzi.enabled (eq .Values.strimzi.authentication "tls") (ne $k.securityProtocol "SSL") -}}
{{- fail "strimzi.authentication tls needs kafka.securityProtocol SSL" -}}
{{- end -}}
{{- end -}}

{{/* One egress rule: {ports: [...], to: [peers]}. */}}
{{- define "tp.egressTo" -}}
- to:
    {{- toYaml .to | nindent 4 }}
  ports:
    {{- range .ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end -}}
