/* fmnist_edge.edge_runtime._fastpng: a folder's plain 8-bit gray PNGs of the model's size read,
 * inflated and unfiltered in C, a whole chunk of files per call, with the GIL released.
 *
 * fastpng.py says which files are sent here and why. A file is taken only when this code is
 * sure it gives the pixels the runtime's own decode (decode.py's plain-PNG path) would give;
 * for anything else it answers LEFT and decode.py decodes the file, or says what is wrong with
 * it, in its own words. So every doubt is a LEFT: a file that is not a regular file of at most
 * 1 MiB, any chunk cut short, a chunk other than those below, an IHDR that is not the first
 * chunk or whose CRC is wrong, IDAT chunks with another chunk between them, more chunks than
 * allowed, more text than allowed, a zlib stream that is corrupt, that does not end or that
 * holds more or less than the image, data after it, or a row filter other than 0-4.
 *
 * decode_gray(paths, out, height, width, max_chunks, max_text) -> bytes, one status a path:
 * 0 (TAKEN): its pixels are in out[i] (height * width bytes); 1 (LEFT): out[i] holds anything.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

#define TAKEN 0
#define LEFT 1
#define MAX_FILE (1 << 20)      /* decode.py reads files up to this size whole */
#define FIRST_CAP (1 << 16)     /* the file buffer's first size; it grows up to MAX_FILE */
#define MAX_ROWS (1 << 26)      /* bytes of inflated rows this module will hold */
#define MIN_PNG (8 + 25 + 12 + 12) /* signature, IHDR, an IDAT, IEND */

static const unsigned char SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* Chunks that change nothing in an 8-bit gray image's pixels (a subset of budget.py's
 * _PLAIN_CHUNKS: the compressed text and ICC chunks are left, their inflating is budgeted in
 * Python). tEXt counts against max_text, as budget.walk counts it. */
static const char *const ANCILLARY[] = {"pHYs", "tIME", "gAMA", "cHRM", "sRGB", "sBIT", NULL};

typedef struct {
    unsigned char *file;  /* the file's bytes */
    size_t cap;           /* of file */
    unsigned char *rows;  /* inflated: per row a filter byte, then width pixels; one byte more */
    size_t need;          /* height * (width + 1) */
    z_stream zs;
    int height, width;
    long max_chunks, max_text;
} Work;

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* The whole of a regular file of at most MAX_FILE bytes, read into w->file: its size, or -1. */
static long read_whole(const char *path, Work *w)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO is not waited for */
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < MIN_PNG
        || st.st_size > MAX_FILE) {
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size, got = 0;
    if (size > w->cap) {
        unsigned char *bigger = realloc(w->file, size);
        if (bigger == NULL) {
            close(fd);
            return -1;
        }
        w->file = bigger;
        w->cap = size;
    }
    while (got < size) {
        ssize_t n = read(fd, w->file + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { /* an error, or the file got shorter */
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    return (long)size;
}

static int is_ancillary(const unsigned char *type)
{
    for (const char *const *name = ANCILLARY; *name; name++)
        if (memcmp(type, *name, 4) == 0)
            return 1;
    return 0;
}

/* The IHDR of a plain 8-bit gray image of the model's size, its CRC right. */
static int good_header(const Work *w, const unsigned char *chunk, uint32_t length)
{
    const unsigned char *data = chunk + 8;
    if (length != 13 || memcmp(chunk + 4, "IHDR", 4) != 0)
        return 0;
    if (crc32(0L, chunk + 4, 17) != be32(data + 13))
        return 0;
    return be32(data) == (uint32_t)w->width && be32(data + 4) == (uint32_t)w->height
           && data[8] == 8 && data[9] == 0 && data[10] == 0 && data[11] == 0 && data[12] == 0;
}

/* Walk the n bytes of w->file and inflate its IDAT data into w->rows: TAKEN or LEFT. */
static int inflate_file(Work *w, size_t n)
{
    const unsigned char *f = w->file;
    size_t pos = 8;
    long chunks = 0, text = 0;
    int run = 0; /* IDAT chunks: 0 none yet, 1 in their run, 2 after it */
    int ended = 0;
    if (n < MIN_PNG || memcmp(f, SIGNATURE, 8) != 0)
        return LEFT;
    if (inflateReset(&w->zs) != Z_OK)
        return LEFT;
    w->zs.next_out = w->rows;
    w->zs.avail_out = (uInt)(w->need + 1); /* one byte more: a stream that holds more fills it */
    int streamed = 0;                      /* the zlib stream has ended */
    while (!ended) {
        if (n - pos < 12)
            return LEFT; /* no IEND */
        uint32_t length = be32(f + pos);
        const unsigned char *type = f + pos + 4, *data = f + pos + 8;
        if (length > n - pos - 12)
            return LEFT; /* cut short */
        if (++chunks > w->max_chunks)
            return LEFT;
        if (chunks == 1) {
            if (!good_header(w, f + pos, length))
                return LEFT;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            if (run == 2)
                return LEFT; /* another chunk between IDAT chunks */
            run = 1;
            if (length != 0) {
                if (streamed)
                    return LEFT; /* data after the zlib stream */
                w->zs.next_in = (unsigned char *)data;
                w->zs.avail_in = length;
                int status = inflate(&w->zs, Z_NO_FLUSH);
                if (w->zs.total_out > w->need)
                    return LEFT; /* more than the image */
                if (status == Z_STREAM_END) {
                    streamed = 1;
                    if (w->zs.avail_in != 0)
                        return LEFT;
                } else if (status != Z_OK && status != Z_BUF_ERROR) {
                    return LEFT; /* Z_DATA_ERROR (a checksum too), Z_NEED_DICT, Z_MEM_ERROR */
                }
            }
        } else {
            if (run == 1)
                run = 2;
            if (memcmp(type, "IEND", 4) == 0)
                ended = 1;
            else if (memcmp(type, "tEXt", 4) == 0) {
                text += (long)length;
                if (text > w->max_text)
                    return LEFT;
            } else if (!is_ancillary(type))
                return LEFT; /* IHDR again, PLTE, tRNS, zTXt, iTXt, iCCP, eXIf, APNG's... */
        }
        pos += 12 + (size_t)length;
    }
    return streamed && w->zs.total_out == w->need ? TAKEN : LEFT;
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
}

/* w->rows unfiltered into out (height * width bytes): TAKEN, or LEFT for an unknown filter. */
static int unfilter(const Work *w, unsigned char *out)
{
    const int width = w->width;
    const unsigned char *prev = NULL; /* the row above; none above the first (zeros) */
    for (int y = 0; y < w->height; y++) {
        const unsigned char *in = w->rows + (size_t)y * (width + 1);
        unsigned char *o = out + (size_t)y * width;
        const unsigned char filter = *in++;
        switch (filter) {
        case 0: /* None */
            memcpy(o, in, width);
            break;
        case 1: /* Sub */
            o[0] = in[0];
            for (int x = 1; x < width; x++)
                o[x] = (unsigned char)(in[x] + o[x - 1]);
            break;
        case 2: /* Up */
            for (int x = 0; x < width; x++)
                o[x] = (unsigned char)(in[x] + (prev ? prev[x] : 0));
            break;
        case 3: /* Average */
            for (int x = 0; x < width; x++) {
                int a = x ? o[x - 1] : 0, b = prev ? prev[x] : 0;
                o[x] = (unsigned char)(in[x] + ((a + b) >> 1));
            }
            break;
        case 4: /* Paeth */
            for (int x = 0; x < width; x++) {
                int a = x ? o[x - 1] : 0, b = prev ? prev[x] : 0;
                int c = (x && prev) ? prev[x - 1] : 0;
                o[x] = (unsigned char)(in[x] + paeth(a, b, c));
            }
            break;
        default:
            return LEFT;
        }
        prev = o;
    }
    return TAKEN;
}

static int decode_one(Work *w, const char *path, unsigned char *out)
{
    long n = read_whole(path, w);
    if (n < 0 || inflate_file(w, (size_t)n) != TAKEN)
        return LEFT;
    return unfilter(w, out);
}

static PyObject *decode_gray(PyObject *self, PyObject *args)
{
    PyObject *paths, *seq = NULL, **names = NULL, *result = NULL;
    Py_buffer out = {0};
    int height, width;
    long max_chunks, max_text;
    Work w = {0};
    unsigned char *status = NULL;
    Py_ssize_t n = 0, i;
    int zs_ready = 0;

    (void)self;
    if (!PyArg_ParseTuple(args, "Ow*iill:decode_gray", &paths, &out, &height, &width,
                          &max_chunks, &max_text))
        return NULL;
    if (height < 1 || width < 1 || (size_t)height * ((size_t)width + 1) > MAX_ROWS) {
        PyErr_Format(PyExc_ValueError, "decode_gray: no %dx%d image is decoded here", width,
                     height);
        goto done;
    }
    seq = PySequence_Tuple(paths); /* a copy: an __fspath__ below cannot change its length */
    if (seq == NULL)
        goto done;
    n = PyTuple_GET_SIZE(seq);
    if ((size_t)out.len / ((size_t)height * width) < (size_t)n) {
        PyErr_SetString(PyExc_ValueError, "decode_gray: out holds fewer images than paths");
        goto done;
    }
    names = PyMem_Calloc(n ? n : 1, sizeof *names);
    status = PyMem_Malloc(n ? n : 1);
    w.need = (size_t)height * (width + 1);
    w.rows = malloc(w.need + 1);
    w.file = malloc(FIRST_CAP);
    w.cap = FIRST_CAP;
    if (names == NULL || status == NULL || w.rows == NULL || w.file == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++) { /* str, bytes or os.PathLike; a name that cannot be one: LEFT */
        if (!PyUnicode_FSConverter(PyTuple_GET_ITEM(seq, i), &names[i])) {
            PyErr_Clear();
            names[i] = NULL;
        }
    }
    if (inflateInit(&w.zs) != Z_OK) {
        PyErr_NoMemory();
        goto done;
    }
    zs_ready = 1;
    w.height = height;
    w.width = width;
    w.max_chunks = max_chunks;
    w.max_text = max_text;
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < n; i++) {
        unsigned char *slot = (unsigned char *)out.buf + (size_t)i * height * width;
        status[i] = names[i] ? decode_one(&w, PyBytes_AS_STRING(names[i]), slot) : LEFT;
    }
    Py_END_ALLOW_THREADS
    result = PyBytes_FromStringAndSize((const char *)status, n);
done:
    if (zs_ready)
        inflateEnd(&w.zs);
    if (names != NULL)
        for (i = 0; i < n; i++)
            Py_XDECREF(names[i]);
    PyMem_Free(names);
    PyMem_Free(status);
    free(w.rows);
    free(w.file);
    Py_XDECREF(seq);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_gray", decode_gray, METH_VARARGS,
     "decode_gray(paths, out, height, width, max_chunks, max_text) -> bytes: per path 0, its "
     "plain 8-bit gray PNG's pixels in out[i], or 1, left to the runtime's own decode."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpng",
    "Plain 8-bit gray PNGs of a model's size decoded in C, with the GIL released (fastpng.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__fastpng(void)
{
    return PyModule_Create(&module);
}
