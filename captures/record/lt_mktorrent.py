#!/usr/bin/python3
"""Create a deterministic random payload file and a v1-only .torrent for it; print the v1 info-hash."""
import argparse
import os
import random

import libtorrent as lt

ap = argparse.ArgumentParser()
ap.add_argument("--file", required=True)
ap.add_argument("--size", type=int, required=True)
ap.add_argument("--seed", type=int, required=True)
ap.add_argument("--tracker", default="-", help="announce URL, or - for none (trackerless)")
ap.add_argument("--piece-size", type=int, default=16384)
ap.add_argument("--torrent", required=True)
a = ap.parse_args()

with open(a.file, "wb") as f:
    f.write(random.Random(a.seed).randbytes(a.size))
fs = lt.file_storage()
lt.add_files(fs, a.file)
ct = lt.create_torrent(fs, a.piece_size, flags=lt.create_torrent.v1_only)
if a.tracker != "-":
    ct.add_tracker(a.tracker)
ct.set_creator("p2pguard capture recorder")
lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(a.file)))
e = ct.generate()
e.pop(b"creation date", None)  # keep the .torrent byte-identical across runs
with open(a.torrent, "wb") as f:
    f.write(lt.bencode(e))
print(str(lt.torrent_info(a.torrent).info_hashes().v1))
