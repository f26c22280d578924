# Run here, on the CPU machine (it reaches PyPI) with the project venv active, before a GPU session: builds the two
# ignored folders the GPU scripts carry beside the tree, .whl/ (the wheels setup.sh installs on the bare image, at the
# venv's versions) and .gpu_data/fashion-mnist/ (the Debian package's IDX files). Then: run(..., carry=[".whl", ".gpu_data"]).
set -e
cd "$(dirname "$0")/../.."
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
wheels=""
for pkg in datasets diffusers evaluate dill multiprocess fsspec importlib_metadata; do
  wheels="$wheels $pkg==$(version $pkg)"
done
rm -rf .whl && python3 -m pip download -q --no-deps --only-binary=:all: --dest .whl $wheels
mkdir -p .gpu_data && rm -rf .gpu_data/fashion-mnist
cp -r /usr/share/datasets/fashion-mnist .gpu_data/
du -sh .whl .gpu_data
