/* A PROTOTYPE, measured and not shipped (nothing builds or imports it): a plain 8-bit gray
 * PNG of the model's size read, inflated and unfiltered in C for a whole chunk of a folder,
 * with the GIL released; anything else (status 1) is left to the runtime's own decode.
 * Its measurement and what shipping it would need: README.md beside it.
 * decode_into(paths: list[str], out: writable (N, H, W) uint8 buffer, H, W) -> bytes of N
 * statuses, 0 decoded into out[i], 1 not taken. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <zlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
#include <string.h>
#include <stdlib.h>

static unsigned rd32(const unsigned char *p) { return (p[0]<<24)|(p[1]<<16)|(p[2]<<8)|p[3]; }

/* 0 ok; 1 fall back */
static int decode_one(const char *path, unsigned char *out, int h, int w, unsigned char *rows, unsigned char *file, size_t cap) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return 1;
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (size_t)st.st_size > cap || st.st_size < 57) { close(fd); return 1; }
    ssize_t n = read(fd, file, st.st_size);
    close(fd);
    if (n != st.st_size) return 1;
    static const unsigned char sig[8] = {0x89,'P','N','G','\r','\n',0x1a,'\n'};
    if (memcmp(file, sig, 8)) return 1;
    size_t pos = 8; int seen_ihdr = 0, ended = 0;
    z_stream zs; memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) return 1;
    size_t need = (size_t)h * (w + 1);
    zs.next_out = rows; zs.avail_out = need;
    int zdone = 0, chunks = 0;
    while (pos + 12 <= (size_t)n) {
        unsigned len = rd32(file + pos); const unsigned char *type = file + pos + 4;
        if (pos + 12 + (size_t)len > (size_t)n || ++chunks > 64) goto fail;
        const unsigned char *data = file + pos + 8;
        if (!memcmp(type, "IHDR", 4)) {
            if (len != 13 || seen_ihdr) goto fail;
            if ((int)rd32(data) != w || (int)rd32(data + 4) != h) goto fail;
            if (data[8] != 8 || data[9] != 0 || data[10] || data[11] || data[12]) goto fail;
            seen_ihdr = 1;
        } else if (!memcmp(type, "IDAT", 4)) {
            if (!seen_ihdr || zdone) goto fail;
            zs.next_in = (unsigned char *)data; zs.avail_in = len;
            int r = inflate(&zs, Z_NO_FLUSH);
            if (r == Z_STREAM_END) zdone = 1; else if (r != Z_OK && r != Z_BUF_ERROR) goto fail;
            if (zs.avail_out == 0 && !zdone) { /* more data than the image holds? check end */
                unsigned char extra; zs.next_out = &extra; zs.avail_out = 1;
                r = inflate(&zs, Z_NO_FLUSH);
                if (r != Z_STREAM_END || zs.avail_out == 0) goto fail;
                zdone = 1;
            }
        } else if (!memcmp(type, "IEND", 4)) { ended = 1; break; }
        else if (!memcmp(type, "tEXt", 4) || !memcmp(type, "pHYs", 4) || !memcmp(type, "gAMA", 4)) { }
        else goto fail;
        pos += 12 + len;
    }
    inflateEnd(&zs);
    if (!ended || !zdone || zs.total_out != need) return 1;
    /* unfilter */
    unsigned char *prev = NULL;
    for (int y = 0; y < h; y++) {
        unsigned char *r = rows + (size_t)y * (w + 1); unsigned char f = r[0]; unsigned char *cur = r + 1;
        unsigned char *o = out + (size_t)y * w;
        for (int x = 0; x < w; x++) {
            int a = x ? o[x-1] : 0, b = prev ? prev[x] : 0, c = (x && prev) ? prev[x-1] : 0, v = cur[x];
            switch (f) {
            case 0: break;
            case 1: v += a; break;
            case 2: v += b; break;
            case 3: v += (a + b) >> 1; break;
            case 4: { int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
                      v += (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c); break; }
            default: return 1;
            }
            o[x] = (unsigned char)v;
        }
        prev = o;
    }
    return 0;
fail:
    inflateEnd(&zs);
    return 1;
}

static PyObject *decode_into(PyObject *self, PyObject *args) {
    PyObject *paths; Py_buffer buf; int h, w;
    if (!PyArg_ParseTuple(args, "Ow*ii", &paths, &buf, &h, &w)) return NULL;
    Py_ssize_t n = PyList_Size(paths);
    if (n < 0 || buf.len < n * h * w) { PyBuffer_Release(&buf); PyErr_SetString(PyExc_ValueError, "bad args"); return NULL; }
    char **cpaths = malloc(n * sizeof(char *));
    for (Py_ssize_t i = 0; i < n; i++) cpaths[i] = (char *)PyUnicode_AsUTF8(PyList_GET_ITEM(paths, i));
    unsigned char *status = calloc(n, 1);
    size_t cap = 1 << 16;
    unsigned char *rows = malloc((size_t)h * (w + 1)), *file = malloc(cap);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) status[i] = decode_one(cpaths[i], (unsigned char *)buf.buf + i * h * w, h, w, rows, file, cap);
    Py_END_ALLOW_THREADS
    free(rows); free(file); free(cpaths);
    PyObject *res = PyBytes_FromStringAndSize((char *)status, n);
    free(status); PyBuffer_Release(&buf);
    return res;
}
static PyMethodDef M[] = {{"decode_into", decode_into, METH_VARARGS, ""}, {NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "fastpng", NULL, -1, M};
PyMODINIT_FUNC PyInit_fastpng(void) { return PyModule_Create(&mod); }
