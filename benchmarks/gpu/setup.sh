# Source on a lent GPU machine (bare image with torch / transformers / accelerate) from the repo root.
# Needs, carried beside the tree: .whl/ (datasets, diffusers, evaluate, dill, multiprocess, fsspec,
# importlib_metadata wheels) and .gpu_data/fashion-mnist/ (the four IDX files).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TQDM_DISABLE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p /usr/share/datasets && cp -r .gpu_data/fashion-mnist /usr/share/datasets/
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
python3 -c "import torch, transformers, datasets, hf_counterfactual; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'datasets', datasets.__version__)" || exit 1
