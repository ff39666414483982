#!/bin/sh
# Entry point of a pod of the GPU work pool (infra/gpu-work-pool.json), one pod per node of an Indexed Job:
#
#   gpu-entrypoint.sh --nnodes=N --nproc-per-node=G --rdzv-port=P --run-dir=DIR -- FLOW_RUN_COMMAND...
#
# Pod 0 (the only pod when N=1) runs the flow run command the Prefect worker gives it: the whole flow, whose train
# step starts torchrun with G processes and, for N > 1, hosts the c10d rendezvous (train.rdzv_endpoint=localhost:P).
# Pods 1..N-1 wait until that train step has written DIR/train/launch_config.yaml on the shared volume, then run the
# same torchrun worker command as pipeline_lib.training.distributed.torchrun_command, pointed at pod 0's stable DNS name
# <job name>-0.<headless service>. TUNEPIPE_DRY_RUN=1 prints that command instead of running it.
set -eu
nnodes=1 nproc=1 port=29400 run_dir=""
wait_s="${TUNEPIPE_PEER_WAIT_SECONDS:-3600}"
while [ $# -gt 0 ]; do
  case "$1" in
    --nnodes=*) nnodes="${1#*=}" ;;
    --nproc-per-node=*) nproc="${1#*=}" ;;
    --rdzv-port=*) port="${1#*=}" ;;
    --run-dir=*) run_dir="${1#*=}" ;;
    --) shift; break ;;
    *) break ;;
  esac
  shift
done

if [ "${JOB_COMPLETION_INDEX:-0}" = 0 ]; then
  exec "$@"
fi
if [ -z "$run_dir" ]; then
  echo "pod ${JOB_COMPLETION_INDEX} of ${nnodes}: multi-node needs the job variable run_dir (and the same flow parameter run_dir)" >&2
  exit 2
fi
config="$run_dir/train/launch_config.yaml"
waited=0
until [ -f "$config" ]; do
  if [ "$waited" -ge "$wait_s" ]; then
    echo "pod ${JOB_COMPLETION_INDEX}: no $config after ${wait_s}s (did pod 0's train step start?)" >&2
    exit 1
  fi
  sleep 5
  waited=$((waited + 5))
done
endpoint="${JOB_NAME:?JOB_NAME is set from the pod label job-name}-0.${RDZV_SUBDOMAIN:?}:${port}"
set -- python -m torch.distributed.run --nproc_per_node="$nproc" --nnodes="$nnodes" --rdzv_backend=c10d \
  --rdzv_endpoint="$endpoint" --rdzv_id="$(basename "$run_dir")" -m pipeline_lib.steps.train "$config" "$run_dir"
if [ -n "${TUNEPIPE_DRY_RUN:-}" ]; then
  echo "$@"
  exit 0
fi
exec "$@"
