#!/usr/bin/env python3
"""What the NVIDIA driver made of our WGSL: read the driver's shader disk cache (GLCache: a .toc of entries into a .bin,
each entry zstd-packed), split each unpacked "NVuc" object into its sections, disassemble every section with nvdisasm
(Triton's bundled copy, or one on PATH) as raw SM code, and print per kernel: instructions, the highest register
index, and counts of the instructions that matter for the tensor kernels (HMMA, LDSM, LDS/STS, LDG, BAR, MUFU,
spills LDL/STL). The largest listings go to OUT as text.

  __GL_SHADER_DISK_CACHE_PATH=/tmp/glc __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 deno run -A bench/fwd_forms.ts
  python3 bench/sass_dump.py /tmp/glc $OUT/sass [SM90]

The container layout (magic "CDVN", section magic 0x9846A19D, NVuc section table) follows the public notes of the
nvcachetools project; the parsing here is our own.
"""
import glob
import os
import re
import shutil
import struct
import subprocess
import sys


def unzstd(data: bytes, size: int) -> bytes | None:
    for mod in ("compression.zstd", "zstandard", "zstd"):
        try:
            m = __import__(mod, fromlist=["x"])
            if hasattr(m, "ZstdDecompressor"):
                return m.ZstdDecompressor().decompress(data, max_output_size=size) if mod == "zstandard" else m.decompress(data)
            return m.decompress(data)
        except Exception:
            continue
    if shutil.which("zstd"):
        r = subprocess.run(["zstd", "-d", "-c"], input=data, capture_output=True)
        if r.returncode == 0:
            return r.stdout
    return None


def entries(toc_path: str):
    toc = open(toc_path, "rb").read()
    binf = open(toc_path[:-4] + ".bin", "rb").read()
    if toc[:4] != b"CDVN":
        return
    for i in range((len(toc) - 0x20) // 0x18):
        off, size = struct.unpack_from("<II", toc, 0x20 + i * 0x18 + 0x10)
        if size < 4 or off + 0x24 + size - 4 > len(binf):
            continue
        hdr = struct.unpack_from("<9I", binf, off)
        if hdr[0] != 0x9846A19D:
            continue
        packed = binf[off + 0x24: off + 0x24 + size - 4]
        if packed[:4] == b"\x28\xb5\x2f\xfd":
            obj = unzstd(packed, hdr[8])
            if obj is None:
                print(f"  entry {i}: zstd-packed, and no zstd decoder here (python compression.zstd / zstandard, or the zstd CLI)")
        else:
            obj = packed
        if obj:
            yield i, obj


def sections(obj: bytes):
    # the driver's 580 objects open with "NVDA" "NVVM" before the "NVuc" archive
    at = obj.find(b"NVuc", 0, 16)
    if at < 0 or len(obj) < at + 32:
        return []
    obj = obj[at:]
    n = struct.unpack_from("<I", obj, 8)[0] & 0xFFFF
    out = []
    for i in range(n):
        if 32 + 32 * i + 12 > len(obj):
            break
        typ, length, off = struct.unpack_from("<III", obj, 32 + 32 * i)
        if off + length <= len(obj) and off % 4 == 0 and length >= 16:
            out.append((i, typ, obj[off: off + length]))
    return out


def find_nvdisasm() -> str | None:
    try:
        import triton  # noqa: F401
        base = os.path.dirname(triton.__file__)
        for p in glob.glob(os.path.join(base, "**", "nvdisasm"), recursive=True):
            if os.access(p, os.X_OK):
                return p
    except Exception:
        pass
    return shutil.which("nvdisasm")


KEYS = ["HMMA", "LDSM", "LDS", "STS", "LDG", "STG", "BAR", "MUFU", "LDL", "STL", "SHFL", "FFMA", "BRA"]


def main():
    cache, out = sys.argv[1], sys.argv[2]
    sm = sys.argv[3] if len(sys.argv) > 3 else "SM90"
    os.makedirs(out, exist_ok=True)
    nvd = find_nvdisasm()
    print(f"nvdisasm: {nvd}")
    tocs = glob.glob(os.path.join(cache, "**", "*.toc"), recursive=True)
    print(f"toc files: {len(tocs)}")
    rows = []
    tmp = "/tmp/sass_sections"
    os.makedirs(tmp, exist_ok=True)
    shown = 0
    for t in tocs:
        for ei, obj in entries(t):
            secs = sections(obj)
            # embedded ELF images (cubins): carved by their section-header table and disassembled whole
            pos = obj.find(b"\x7fELF")
            while pos >= 0 and nvd:
                try:
                    shoff, = struct.unpack_from("<Q", obj, pos + 0x28)
                    shentsize, shnum = struct.unpack_from("<HH", obj, pos + 0x3A)
                    end = pos + shoff + shentsize * shnum
                    if end <= len(obj) and shnum > 0:
                        p = os.path.join(tmp, f"e{ei}_{pos}.cubin")
                        open(p, "wb").write(obj[pos:end])
                        secs.append((f"elf@{pos}", -1, None, p))
                except struct.error:
                    pass
                pos = obj.find(b"\x7fELF", pos + 4)
            if shown < 12:
                print(f"  entry {ei}: {len(obj)} bytes, head {obj[:16].hex()}, {len(secs)} sections/images")
                shown += 1
            if not secs:
                continue
            for sec in secs:
                si, typ, data = sec[0], sec[1], sec[2]
                if not nvd:
                    continue
                if data is None:  # a carved ELF
                    p = sec[3]
                    r = subprocess.run([nvd, "-c", p], capture_output=True, text=True)
                    typ = 0
                else:
                    p = os.path.join(tmp, f"e{ei}_s{si}.bin")
                    open(p, "wb").write(data)
                    r = subprocess.run([nvd, "--binary", sm, p], capture_output=True, text=True)
                if r.returncode != 0:
                    continue
                lines = [l for l in r.stdout.splitlines() if re.search(r"/\*[0-9a-f]{4,}\*/", l)]
                if len(lines) < 20:
                    continue
                text = "\n".join(lines)
                ops = [m.group(1) for m in (re.search(r"\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]*)", l) for l in lines) if m]
                counts = {k: sum(1 for o in ops if o == k or o.startswith(k + ".")) for k in KEYS}
                regs = [int(x) for x in re.findall(r"\bR(\d+)\b", text)]
                rows.append((len(lines), ei, si, typ, max(regs) if regs else -1, counts, text))
    rows.sort(key=lambda r: -r[0])
    print(f"code sections: {len(rows)}")
    for n, ei, si, typ, maxr, counts, text in rows[:40]:
        print(f"entry {ei} sec {si} type {typ}: {n} instr, max reg R{maxr}, " + " ".join(f"{k}={v}" for k, v in counts.items() if v))
    for n, ei, si, typ, maxr, counts, text in [r for r in rows if r[5]["HMMA"] > 0][:int(os.environ.get("SASS_KEEP", "6"))]:
        open(os.path.join(out, f"sass_e{ei}_s{si}.txt"), "w").write(text)


if __name__ == "__main__":
    main()
