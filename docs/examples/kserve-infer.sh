#!/bin/sh
# Call the edgecut agent service (edgecut agent serve, docs/device.md) from any language: here, curl.
#
#   docs/examples/kserve-infer.sh MODEL IMAGE [URL]
#
# Prints the model's cuts and link estimate, then the answer for one image:
# its outputs, and in "parameters" the cut used, why, and the timing breakdown.
set -eu
model=${1:?usage: kserve-infer.sh MODEL IMAGE [URL]}
image=${2:?usage: kserve-infer.sh MODEL IMAGE [URL]}
url=${3:-http://127.0.0.1:8080}

case "$image" in
*.jpg | *.jpeg | *.JPG | *.JPEG) type=image/jpeg ;;
*) type=image/png ;;
esac

# 200 once the models are open (with or without a broker), 503 before.
curl --silent --show-error --fail-with-body "$url/v2/health/ready"
echo
curl --silent --show-error --fail-with-body "$url/v2/models/$model"
echo
# The image file itself is the body: the service decodes and resizes it for the model's input.
# A model that takes tensors gets KServe v2 JSON instead:
#   {"inputs": [{"name": "image", "shape": [1, 32, 32, 3], "datatype": "UINT8", "data": [...]}]}
curl --silent --show-error --fail-with-body -X POST -H "Content-Type: $type" --data-binary "@$image" \
    "$url/v2/models/$model/infer"
echo
