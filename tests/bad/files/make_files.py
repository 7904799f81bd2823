#!/usr/bin/env python3
"""make_files.py: writes the malformed data files and checkpoints of tests/bad/files/.

Run from this folder (python3 make_files.py); the files are committed, this script only
documents and reproduces how each was made. No NumPy needed: .npy, IDX and safetensors
are written byte by byte. The model they are fed to is the fake denoiser
(tests/unit/helpers/fake_module.c): input f32[64, 2], params net.w f32[2, 2], net.b f32[2],
Adam state, graph hash 0123456789abcdef. Checkpoints from another graph
(ckpt_foreign.safetensors) and from another optimizer (ckpt_sgd.safetensors) are made by
tests/scripts/bad_files.sh --update with the real training executable.
"""
import gzip, json, struct

def npy_header(descr, shape, fortran=False, version=1, shape_text=None):
    st = shape_text if shape_text is not None else (
        "(%d,)" % shape[0] if len(shape) == 1 else "(" + ", ".join(str(d) for d in shape) + ")")
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, "True" if fortran else "False", st)
    pre = 10 if version == 1 else 12
    h += " " * (-(pre + len(h) + 1) % 64) + "\n"
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode()
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(h)) + h.encode()

def f4(n):
    return struct.pack("<%df" % n, *[0.01 * i for i in range(n)])

def w(name, data):
    open(name, "wb").write(data)

# ---- .npy data files (model rows: 2 f32 values) ----
w("npy_bad_magic.npy", b"\x93NUMPX\x01\x00" + npy_header("<f4", [4, 2])[8:] + f4(8))
w("npy_too_short.npy", b"\x93NUM")
w("npy_header_past_end.npy", b"\x93NUMPY\x01\x00\xff\x7f{'descr': '<f4'")
w("npy_truncated.npy", npy_header("<f4", [100, 2]) + f4(6))
w("npy_lying_header.npy", npy_header("<f4", [2, 2]) + f4(40))
w("npy_wrong_dtype.npy", npy_header("<i4", [4, 2]) + struct.pack("<8i", *range(8)))
w("npy_big_endian.npy", npy_header(">f4", [4, 2]) + struct.pack(">8f", *range(8)))
w("npy_fortran.npy", npy_header("<f4", [4, 2], fortran=True) + f4(8))
w("npy_wrong_shape.npy", npy_header("<f4", [4, 3]) + f4(12))
w("npy_empty.npy", npy_header("<f4", [0, 2]))
w("npy_scalar.npy", npy_header("<f4", [], shape_text="()") + f4(1))
w("npy_bad_version.npy", b"\x93NUMPY\x09\x00" + npy_header("<f4", [4, 2])[8:] + f4(8))
w("npy_no_shape.npy", npy_header("<f4", [4, 2]).replace(b"'shape'", b"'shapx'") + f4(8))
w("npy_negative_dim.npy", npy_header("<f4", [], shape_text="(-4, 2)") + f4(8))
w("npy_huge_shape.npy", npy_header("<f4", [], shape_text="(1000000000000000000, 2)") + f4(8))
w("npy_f64_rank1.npy", npy_header("<f8", [8]) + struct.pack("<8d", *range(8)))

# ---- IDX files (unsigned-byte images) ----
def idx(dims, data, typ=8):
    return bytes([0, 0, typ, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data

w("idx_bad_magic.idx3-ubyte", b"\x01\x02\x08\x03" + idx([2, 1, 2], bytes(4))[4:])
w("idx_truncated_header.idx3-ubyte", idx([2, 1, 2], b"")[:9])
w("idx_truncated.idx3-ubyte", idx([10, 1, 2], bytes(6)))
w("idx_lying_header.idx3-ubyte", idx([2, 1, 2], bytes(40)))
w("idx_float_type.idx3-ubyte", idx([2, 1, 2], bytes(16), typ=0x0D))
w("idx_huge_claim.idx3-ubyte", idx([1024, 1024, 4096], bytes(16)))   # 4 GiB claimed
w("idx_implausible.idx3-ubyte", idx([65536, 65536, 65536], bytes(16)))
w("idx_zero_rows_overflow.idx3-ubyte", idx([0, 0xFFFFFFFF, 0xFFFFFFFF], b""))
w("idx_wrong_shape.idx3-ubyte", idx([4, 3, 3], bytes(36)))
noise = bytes((i * 7919 + (i >> 3) * 31) % 251 for i in range(1024))  # barely compressible
w("idx_corrupt.idx3-ubyte.gz", gzip.compress(idx([4, 16, 16], noise))[:300] + b"garbage!" * 40)
w("idx_empty.idx3-ubyte", b"")
w("pair-images-idx3-ubyte", idx([4, 1, 2], bytes(range(8))))
w("pair-labels-idx1-ubyte", idx([3], bytes([1, 2, 3])))

# ---- safetensors checkpoints (resumed into the fake denoiser) ----
def st(tensors, meta, pad=True, header=None):
    hdr, data = {}, b""
    for k, (dt, shape, raw) in tensors.items():
        hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        hdr["__metadata__"] = meta
    h = header if header is not None else json.dumps(hdr).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data

META = {"format": "gradc-ckpt", "format_version": "1", "step": "10", "seed": "0",
        "graph_hash": "0123456789abcdef", "optimizer": "adam"}
def full(**over):
    t = {}
    for pre in ["", "ema/", "adam_m/", "adam_v/"]:
        t[pre + "net.w"] = ("F32", [2, 2], f4(4))
        t[pre + "net.b"] = ("F32", [2], f4(2))
    t.update(over)
    return t

good = st(full(), META)
w("ckpt_truncated.safetensors", good[:len(good) - 10])
w("ckpt_header_past_end.safetensors", struct.pack("<Q", 1 << 40) + good[8:])
w("ckpt_header_len_past_end.safetensors", struct.pack("<Q", len(good)) + good[8:])
w("ckpt_bad_json.safetensors", st({}, None, header=b'{"net.w": {"dtype": "F32", "shape": [2, 2], }'))
w("ckpt_offsets_outside.safetensors", good.replace(b"[0, 16]", b"[0, 9999]", 1))
w("ckpt_wrong_dtype.safetensors", st(full(**{"net.w": ("F64", [2, 2], f4(8))}), META))
w("ckpt_wrong_shape.safetensors", st(full(**{"net.w": ("F32", [4], f4(4))}), META))
t = full(); del t["net.b"]
w("ckpt_missing_tensor.safetensors", st(t, META))
w("ckpt_no_metadata.safetensors", st(full(), None))
w("ckpt_empty.safetensors", b"")
w("ckpt_binary_junk.safetensors", bytes((i * 37 + 11) % 256 for i in range(300)))
w("ckpt_bad_step.safetensors", st(full(), dict(META, step="-3")))
w("ckpt_other_graph.safetensors", st({"enc.w": ("F32", [3, 3], f4(9)), "ema/enc.w": ("F32", [3, 3], f4(9)),
                                      "adam_m/enc.w": ("F32", [3, 3], f4(9)),
                                      "adam_v/enc.w": ("F32", [3, 3], f4(9))},
                                     dict(META, graph_hash="ffff0000ffff0000")))
w("ckpt_byte_count.safetensors", good.replace(b'"shape": [2, 2], "data_offsets": [0, 16]',
                                              b'"shape": [2, 3], "data_offsets": [0, 16]', 1))

# ---- a good input for `gradc run model.grad --in x=ok_x4.npy` (the params cases) ----
w("ok_x4.npy", npy_header("<f4", [4, 2]) + f4(8))
