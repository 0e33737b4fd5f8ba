"""Run the `bench_one.py` operations against ONE-api 3.6.1 on the same caches; print ratios.

ONE-api is installed, as a black box, into its own virtual environment
``benchmarks/_data/peer-venv`` (``pip install ONE-api==3.6.1``; never into the project's
.venv).  For each size, `bench_one.py --worker` runs once with our interpreter and once with
the peer's (each in a fresh process, on the same generated cache folder), and the table shows
both medians and the ratios ONE-api / one-next of the wall and CPU medians (> 1: we are
faster; on a busy machine the CPU ratio is the more reliable).  The result counts of
both are compared, so a ratio is only shown next to matching answers ("n differ" otherwise).

ONE-api 3.x has no ``dataset`` search term (only ``datasets``): that row shows "n/a".

ONE-api takes seconds to minutes per call on these tables (e.g. ~4 s per ``search(datasets)``
at 100k datasets, growing linearly), so it gets fewer repeats (``--peer-repeat``, default 2
after the first call, and 1 start-up) and, above 10k sessions, only the operations of
``--big-ops`` (start-up, the searches and list_datasets by default).  Rows are printed as
each size finishes.

Usage::

    python benchmarks/one_api_peer.py [--sizes 10000,40000] [--quick]

If the peer cannot be installed (no network, no wheel for this Python), it says so and exits
with status 0.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_one  # noqa: E402

PEER_VERSION = '3.6.1'
BIG_OPS = 'startup,search_datasets,search_subject,list_datasets'
PEER_VENV = bench_one.DATA / 'peer-venv'


def _peer_python() -> Path:
    return PEER_VENV / ('Scripts/python.exe' if os.name == 'nt' else 'bin/python')


def _clean_env() -> dict:
    """The environment for the peer: nothing that could put our `one` on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME',
                                                           'VIRTUAL_ENV')}
    env['PYTHONNOUSERSITE'] = '1'
    return env


def peer_version() -> str | None:
    python = _peer_python()
    if not python.exists():
        return None
    proc = subprocess.run([str(python), '-c', 'import one; print(one.__version__)'],
                          capture_output=True, text=True, env=_clean_env(),
                          cwd=str(PEER_VENV))
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_peer() -> Path | None:
    """Create the peer venv with ONE-api installed; its python, or None if that failed."""
    if peer_version() == PEER_VERSION:
        return _peer_python()
    print(f'installing ONE-api=={PEER_VERSION} into {PEER_VENV} ...', file=sys.stderr)
    PEER_VENV.parent.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, '-m', 'venv', '--clear', str(PEER_VENV)],
             [str(_peer_python()), '-m', 'pip', 'install', '-q', f'ONE-api=={PEER_VERSION}']]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env())
        if proc.returncode:
            print(f'could not install ONE-api {PEER_VERSION} ({" ".join(cmd[-3:])}):\n'
                  f'{proc.stderr[-2000:]}', file=sys.stderr)
            return None
    if peer_version() != PEER_VERSION:
        print(f'ONE-api {PEER_VERSION} does not import in {PEER_VENV}', file=sys.stderr)
        return None
    return _peer_python()


def format_comparison(rows: list[tuple]) -> str:
    header = ('sessions', 'operation', 'one-next ms', 'ONE-api ms', 'ratio (wall)',
              'ratio (cpu)', 'first: one-next', 'first: ONE-api', 'n')
    table = [header, *rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    lines = ['  '.join(str(c).ljust(w) if i == 1 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in table]
    lines.insert(1, '-' * len(lines[0]))
    return '\n'.join(lines)


def _ratio(b: float | None, a: float | None) -> str:
    return f'{b / a:.1f}x' if a and b else ''


def compare(n_sessions: int, ours: dict, peer: dict) -> list[tuple]:
    """Rows of the comparison table: medians, ONE-api / one-next ratios, first calls, n."""
    ms = bench_one._ms
    rows = []
    for op, (label, _) in bench_one.OPERATIONS.items():
        a, b = ours['ops'].get(op), peer['ops'].get(op)
        if a is None or b is None:
            continue
        if 'error' in a or 'error' in b:
            rows.append((f'{n_sessions:,}', label,
                         'error' if 'error' in a else ms(a['median']),
                         'n/a' if 'error' in b else ms(b['median']), '', '', '', '',
                         (b.get('error') or a.get('error'))[:60]))
            continue
        same = op == 'startup' or a.get('n') == b.get('n')
        rows.append((f'{n_sessions:,}', label, ms(a['median']), ms(b['median']),
                     _ratio(b['median'], a['median']) if same else 'n differ',
                     _ratio(b.get('cpu'), a.get('cpu')) if same else '',
                     ms(a['first']), ms(b['first']),
                     '' if op == 'startup' else f"{a.get('n')}/{b.get('n')}"))
    ma, mb = ours.get('memory'), peer.get('memory')
    if ma and mb:
        rows.append((f'{n_sessions:,}', 'start-up peak memory (MB)', f"{ma['peak_mb']:.0f}",
                     f"{mb['peak_mb']:.0f}", _ratio(mb['peak_mb'], ma['peak_mb']), '', '', '',
                     ''))
        rows.append((f'{n_sessions:,}', 'memory kept after start-up (MB)',
                     f"{ma['kept_mb']:.0f}", f"{mb['kept_mb']:.0f}",
                     _ratio(mb['kept_mb'], ma['kept_mb']), '', '', '', ''))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default=None,
                        help='comma-separated numbers of sessions (default 10000,40000)')
    parser.add_argument('--quick', action='store_true', help='10k only, 3 repeats')
    parser.add_argument('--repeat', type=int, default=None)
    parser.add_argument('--startup-runs', type=int, default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--peer-repeat', type=int, default=2,
                        help='timed calls per operation for ONE-api (after a first one)')
    parser.add_argument('--big-ops', default=BIG_OPS,
                        help='operations timed above 10k sessions (both implementations)')
    parser.add_argument('--json', default=None, help='also write the results to this file')
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 7)
    startup_runs = args.startup_runs or (1 if args.quick else 3)
    sizes = [int(x) for x in (args.sizes or ('10000' if args.quick else '10000,40000'))
             .split(',')]

    python = ensure_peer()
    if python is None:
        print(f'ONE-api {PEER_VERSION} could not be installed: comparison skipped')
        return 0
    rows, results = [], {}
    print(f'one-next: median of {repeat} calls after a first one, start-up median of '
          f'{startup_runs}; ONE-api: median of {args.peer_repeat} calls after a first one, one '
          'start-up', flush=True)
    for n in sizes:
        folder = bench_one.cache_folder(n, args.seed)
        ops = None if n <= 10_000 else args.big_ops.split(',')
        ours = bench_one.run_worker(folder, repeat=repeat, startup_runs=startup_runs, ops=ops)
        peer = bench_one.run_worker(folder, python=str(python), repeat=args.peer_repeat,
                                    startup_runs=1, ops=ops, env=_clean_env(),
                                    cwd=str(PEER_VENV))
        if Path(peer['one_file']).resolve().is_relative_to(Path(__file__).resolve().parents[1]
                                                           / 'one'):
            raise RuntimeError(f"the peer imported one-next ({peer['one_file']})")
        results[n] = {'one-next': ours, 'ONE-api': peer}
        rows += compare(n, ours, peer)
        print(f"\n{n:,} sessions: one-next {ours['one_version']} (pandas {ours.get('pandas')}, "
              f"load average {ours.get('load_average', 0):.1f}) vs ONE-api "
              f"{peer['one_version']} (pandas {peer.get('pandas')}, load average "
              f"{peer.get('load_average', 0):.1f})")
        print(format_comparison(compare(n, ours, peer)), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    if len(sizes) > 1:
        print('\nall sizes')
        print(format_comparison(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
