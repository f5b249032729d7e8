/* A stand-in for the three libcupti calls trtprof/capture/cupti_raw.py makes through ctypes, for the
 * CPU tests (tests/test_cupti_raw.py compiles it when a C compiler is there): the buffer callbacks'
 * registration, the record walk and the dropped count, with CUPTI's signatures and status values
 * (CUPTI_SUCCESS 0, CUPTI_ERROR_INVALID_PARAMETER 1, CUPTI_ERROR_MAX_LIMIT_REACHED 12). fake_deliver
 * plays CUPTI handing over a buffer: it asks for one through the registered "requested" callback,
 * copies the records in and calls "completed", on whichever thread calls it. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef void (*requested_t)(uint8_t **buffer, size_t *size, size_t *max_records);
typedef void (*completed_t)(void *ctx, uint32_t stream_id, uint8_t *buffer, size_t size, size_t valid);

static requested_t requested;
static completed_t completed;
static size_t record_size[64];     /* by CUpti_ActivityKind: how far the walk steps over a record */
static size_t dropped;
static int register_status;        /* what registering returns: 0, or a CUPTI error to play a refusal */

int cuptiActivityRegisterCallbacks(requested_t r, completed_t c) {
    if (!r || !c) return 1;
    if (register_status) return register_status;
    requested = r;
    completed = c;
    return 0;
}

int cuptiActivityGetNextRecord(uint8_t *buffer, size_t valid, void **record) {
    uint8_t *p = buffer;
    if (*record) {
        uint32_t kind = *(uint32_t *)*record;
        p = (uint8_t *)*record + record_size[kind];
    }
    if (p + 4 > buffer + valid) return 12;
    uint32_t kind = *(uint32_t *)p;
    if (kind >= 64 || !record_size[kind] || p + record_size[kind] > buffer + valid) return 12;
    *record = p;
    return 0;
}

int cuptiActivityGetNumDroppedRecords(void *ctx, uint32_t stream_id, size_t *n) {
    (void)ctx; (void)stream_id;
    *n = dropped;
    dropped = 0;
    return 0;
}

void fake_set_record_size(uint32_t kind, size_t size) { if (kind < 64) record_size[kind] = size; }
void fake_set_dropped(size_t n) { dropped = n; }
void fake_set_register_status(int status) { register_status = status; }

/* 0: delivered; 1: no callbacks; 2: no buffer given (or too small); 3: buffer not 8-byte aligned */
int fake_deliver(const uint8_t *data, size_t n, uint32_t stream_id) {
    uint8_t *buffer = NULL;
    size_t size = 0, max_records = 0;
    if (!requested || !completed) return 1;
    requested(&buffer, &size, &max_records);
    if (!buffer || size < n) return 2;
    if ((uintptr_t)buffer % 8) return 3;
    memcpy(buffer, data, n);
    completed(NULL, stream_id, buffer, size, n);
    return 0;
}
