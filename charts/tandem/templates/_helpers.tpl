{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "tandem.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name of every resource. With `helm install tandem ...` this is "tandem",
the name used by deploy/base.
*/}}
{{- define "tandem.fullname" -}}
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

{{- define "tandem.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels on every object.
*/}}
{{- define "tandem.labels" -}}
helm.sh/chart: {{ include "tandem.chart" . }}
app.kubernetes.io/name: {{ include "tandem.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tandem
{{- end -}}

{{/*
Selector labels of the webhook pods (Deployment, Service, PDB, ServiceMonitor).
*/}}
{{- define "tandem.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tandem.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{/*
"true" when Tandem's server runs (injector.mode webhook or hybrid), else empty.
In policy mode the API server injects on its own: a Deployment, its
certificates and the webhook configurations pointing at it would be a server
nothing needs, and a validating webhook with failurePolicy Fail and no pods
behind it would refuse every SidecarTemplate.
*/}}
{{- define "tandem.serves" -}}
{{- if ne .Values.injector.mode "policy" -}}true{{- end -}}
{{- end -}}

{{/*
The `tandem policy` command whose bindings cover the namespaces this release
covers (mode, excludedNamespaces, the release namespace), for NOTES: policies
with another scope would leave pods to the validating policy to reject.
*/}}
{{- define "tandem.policyCommand" -}}
tandem policy --config <templates dir>
{{- if eq .Values.mode "cluster-wide" }} --mode cluster-wide{{ end }}
{{- if ne .Release.Namespace "tandem-system" }} --namespace {{ .Release.Namespace }}{{ end }}
{{- range .Values.excludedNamespaces }}
{{- if not (has . (list "kube-system" "kube-public" "kube-node-lease")) }} --exclude-namespace {{ . }}{{ end }}
{{- end }}
{{- end -}}

{{- define "tandem.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tandem.serviceAccountName" -}}
{{- include "tandem.fullname" . -}}
{{- end -}}

{{- define "tandem.tlsSecretName" -}}
{{- printf "%s-tls" (include "tandem.fullname" .) -}}
{{- end -}}

{{/*
The Secret whose ca.crt is the CA of the API server's client certificate.
*/}}
{{- define "tandem.clientCaSecretName" -}}
{{- .Values.clientAuth.caSecret | default (printf "%s-client-ca" (include "tandem.fullname" .)) -}}
{{- end -}}

{{- define "tandem.caSecretName" -}}
{{- printf "%s-ca" (include "tandem.fullname" .) -}}
{{- end -}}

{{- define "tandem.servingCertificateName" -}}
{{- printf "%s-serving" (include "tandem.fullname" .) -}}
{{- end -}}

{{/*
DNS name of the webhook Service: <service>.<namespace>.svc
*/}}
{{- define "tandem.serviceHost" -}}
{{- printf "%s.%s.svc" (include "tandem.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/*
Namespaces never sent to Tandem, as a JSON list: excludedNamespaces plus the
release namespace (Tandem must never be asked to admit its own pods).
*/}}
{{- define "tandem.excludedNamespaces" -}}
{{- concat .Values.excludedNamespaces (list .Release.Namespace) | uniq | toJson -}}
{{- end -}}

{{/*
namespaceSelector shared by the MutatingWebhookConfiguration and the
ValidatingAdmissionPolicyBinding, so both always cover the same namespaces.
*/}}
{{- define "tandem.namespaceSelector" -}}
{{- if eq .Values.mode "cluster-wide" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ include "tandem.excludedNamespaces" . }}
  - key: tandem.dev/injection
    operator: NotIn
    values: ["disabled"]
{{- else -}}
matchLabels:
  tandem.dev/injection: enabled
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ include "tandem.excludedNamespaces" . }}
{{- end -}}
{{- end -}}

{{/*
cert-manager CA injection annotation (certificates.mode=cert-manager).
*/}}
{{- define "tandem.caInjectionAnnotation" -}}
{{- if eq .Values.certificates.mode "cert-manager" -}}
cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "tandem.servingCertificateName" .) }}
{{- end -}}
{{- end -}}

{{/*
Self-signed certificates (certificates.mode=self-signed), as JSON:
{caCert, caKey, tlsCert, tlsKey, notAfter}.

- The CA is reused from Secret <fullname>-ca when it exists, so upgrades never
  change the caBundle; otherwise a new CA is generated (genCA).
- The serving certificate is reused from Secret <fullname>-tls when it was
  signed by that CA and does not expire within renewBeforeDays; otherwise a new
  one is signed (genSignedCert). Tandem reloads it without a restart.
- The result is computed once per render and memoised, because several
  templates (Secrets, both webhook configurations) need the same values.
Without cluster access (`helm template`) lookup returns nothing and fresh
certificates are generated on every render.
*/}}
{{- define "tandem.selfSignedCerts" -}}
{{- if not (hasKey .Values "__tandemSelfSignedCerts") -}}
{{- $cfg := .Values.certificates.selfSigned -}}
{{- $host := include "tandem.serviceHost" . -}}
{{- $dnsNames := list $host (printf "%s.cluster.local" $host) -}}
{{- $now := now | unixEpoch | atoi -}}
{{- $caSecret := lookup "v1" "Secret" .Release.Namespace (include "tandem.caSecretName" .) | default dict -}}
{{- $tlsSecret := lookup "v1" "Secret" .Release.Namespace (include "tandem.tlsSecretName" .) | default dict -}}
{{- $caData := get $caSecret "data" | default dict -}}
{{- $tlsData := get $tlsSecret "data" | default dict -}}
{{- $ca := dict -}}
{{- $caReused := false -}}
{{- if and (hasKey $caData "tls.crt") (hasKey $caData "tls.key") -}}
{{- $ca = buildCustomCert (get $caData "tls.crt") (get $caData "tls.key") -}}
{{- $caReused = true -}}
{{- else -}}
{{- $ca = genCA (printf "%s-ca" (include "tandem.fullname" .)) (int $cfg.caValidityDays) -}}
{{- end -}}
{{- $result := dict "caCert" $ca.Cert "caKey" $ca.Key -}}
{{- $notAfter := dig "metadata" "annotations" "tandem.dev/not-after-unix" "0" $tlsSecret | atoi -}}
{{- $renewAt := sub $notAfter (mul (int $cfg.renewBeforeDays) 86400) -}}
{{- $sameCA := eq (get $tlsData "ca.crt" | default "") (b64enc $ca.Cert) -}}
{{- if and $caReused $sameCA (hasKey $tlsData "tls.crt") (hasKey $tlsData "tls.key") (gt $renewAt $now) -}}
{{- $_ := set $result "tlsCert" (get $tlsData "tls.crt" | b64dec) -}}
{{- $_ := set $result "tlsKey" (get $tlsData "tls.key" | b64dec) -}}
{{- $_ := set $result "notAfter" (toString $notAfter) -}}
{{- else -}}
{{- $cert := genSignedCert $host nil $dnsNames (int $cfg.certValidityDays) $ca -}}
{{- $_ := set $result "tlsCert" $cert.Cert -}}
{{- $_ := set $result "tlsKey" $cert.Key -}}
{{- $_ := set $result "notAfter" (toString (add $now (mul (int $cfg.certValidityDays) 86400))) -}}
{{- end -}}
{{- $_ := set .Values "__tandemSelfSignedCerts" $result -}}
{{- end -}}
{{- get .Values "__tandemSelfSignedCerts" | toJson -}}
{{- end -}}
