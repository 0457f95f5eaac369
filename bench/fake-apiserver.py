#!/usr/bin/env python3
"""A fake kube-apiserver holding N pods, for measuring `tandem status`,
`tandem rollout --dry-run` and the memory of `tandem serve`'s pod watch
(bench/day2.sh). Plain HTTP on 127.0.0.1, standard library only.

Pods look like a Deployment's pods on a real cluster: generateName, a
ReplicaSet owner, labels, the annotations Tandem writes and managedFields.
Every tenth ReplicaSet's pods carry an outdated hash. Lists honour `limit`,
`continue` and `labelSelector` (k=v); watches are held open, silent.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PODS_PER_RS = 10
NAMESPACES = 20


def pod(i, current_hash):
    rs = i // PODS_PER_RS
    ns = f"team-{rs % NAMESPACES}"
    rs_name = f"app-{rs}-5d9f8c7b6"
    hash_ = current_hash if rs % 10 else "0123456789abcdef"
    status = json.dumps(
        {
            "templates": [{"name": "log-shipper", "hash": hash_}],
            "containers": ["log-shipper"],
            "volumes": ["app-logs"],
        },
        separators=(",", ":"),
    )
    name = f"{rs_name}-{i:05x}"
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {
            "name": name,
            "generateName": f"{rs_name}-",
            "namespace": ns,
            "uid": f"00000000-0000-4000-8000-{i:012d}",
            "resourceVersion": str(100000 + i),
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "labels": {
                "app": f"app-{rs}",
                "pod-template-hash": "5d9f8c7b6",
                "tandem.dev/injected": "true",
            },
            "annotations": {
                "tandem.dev/inject": "log-shipper",
                "tandem.dev/status": status,
                "kubectl.kubernetes.io/default-container": "app",
                "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes": "app-logs",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs_name,
                    "uid": f"rs-{rs}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-12-01T10:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {
                            "f:generateName": {},
                            "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
                            "f:ownerReferences": {".": {}, f'k:{{"uid":"rs-{rs}"}}': {}},
                        },
                        "f:spec": {
                            "f:containers": {'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}}},
                            "f:restartPolicy": {},
                        },
                    },
                },
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-12-01T10:00:05Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:phase": {}, "f:podIP": {}}},
                    "subresource": "status",
                },
            ],
        },
    }


def replica_set(rs):
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {
            "name": f"app-{rs}-5d9f8c7b6",
            "namespace": f"team-{rs % NAMESPACES}",
            "uid": f"rs-{rs}",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"app-{rs}", "uid": f"d-{rs}", "controller": True}
            ],
        },
    }


def namespace(n):
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": f"team-{n}", "labels": {"tandem.dev/injection": "enabled"}},
    }


class Store:
    def __init__(self, n, current_hash):
        self.pods = [pod(i, current_hash) for i in range(n)]
        self.replica_sets = [replica_set(rs) for rs in range((n + PODS_PER_RS - 1) // PODS_PER_RS)]
        self.namespaces = [namespace(n) for n in range(NAMESPACES)]
        self.requests = 0
        self.lock = threading.Lock()


def page(items, query, kind="PartialObjectMetadataList"):
    limit = int(query.get("limit", ["0"])[0] or 0) or len(items) or 1
    start = int(query.get("continue", ["0"])[0] or 0)
    end = min(start + limit, len(items))
    meta = {"resourceVersion": "200000"}
    if end < len(items):
        meta["continue"] = str(end)
    return {"kind": kind, "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items[start:end]}


def selected(items, query):
    selector = query.get("labelSelector", [""])[0]
    if not selector:
        return items
    key, _, value = selector.partition("=")
    return [i for i in items if i["metadata"].get("labels", {}).get(key) == value]


def in_namespace(items, path):
    parts = path.split("/")
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        ns = parts[parts.index("namespaces") + 1]
        return [i for i in items if i["metadata"]["namespace"] == ns]
    return items


def handler(store):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            with store.lock:
                store.requests += 1
            url = urlparse(self.path)
            query = parse_qs(url.query)
            path = url.path
            if query.get("watch"):
                # A watch with nothing to say: held open until the client goes.
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    while True:
                        time.sleep(30)
                        self.wfile.write(b"0\r\n\r\n")
                        return
                except OSError:
                    return
            # Discovery, enough for kubectl (the yardstick in bench/day2.sh).
            if path == "/api":
                return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
            if path == "/apis":
                return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
            if path == "/api/v1":
                resources = [
                    {"name": n, "singularName": "", "namespaced": ns, "kind": k, "verbs": ["get", "list", "watch"]}
                    for n, ns, k in [("pods", True, "Pod"), ("namespaces", False, "Namespace")]
                ]
                return self.reply(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
            if path == "/version":
                return self.reply(200, {"major": "1", "minor": "36", "gitVersion": "v1.36.2"})
            if path == "/api/v1/namespaces":
                return self.reply(200, page(store.namespaces, query))
            if path.endswith("/pods"):
                items = selected(in_namespace(store.pods, path), query)
                if "as=PartialObjectMetadata" in self.headers.get("Accept", ""):
                    return self.reply(200, page(items, query))
                # What a client asking for whole pods gets (kubectl).
                listed = page(items, query, kind="PodList")
                listed["apiVersion"] = "v1"
                listed["items"] = [
                    {"kind": "Pod", "apiVersion": "v1", "metadata": i["metadata"], "spec": {"containers": [{"name": "app", "image": "app"}]}}
                    for i in listed["items"]
                ]
                return self.reply(200, listed)
            if path.endswith("/replicasets"):
                return self.reply(200, page(in_namespace(store.replica_sets, path), query))
            if path.endswith("/jobs"):
                return self.reply(200, page([], query))
            if path.endswith("/sidecartemplates"):
                return self.reply(
                    200,
                    {"kind": "SidecarTemplateList", "apiVersion": "tandem.dev/v1alpha1", "metadata": {"resourceVersion": "1"}, "items": []},
                )
            return self.reply(404, {"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound", "message": path})

        def do_PATCH(self):
            length = int(self.headers.get("Content-Length", 0))
            self.reply(200, json.loads(self.rfile.read(length) or b"{}"))

        do_POST = do_PATCH

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--hash", required=True, help="log-shipper's current hash")
    args = parser.parse_args()
    store = Store(args.pods, args.hash)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(store))
    server.daemon_threads = True
    print(f"fake API server: {args.pods} pods on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
