/*
 * tests/hil/probe.c — tiny static V4L2 + fbdev probe for the dermcam HIL VM (and real boards).
 *
 *   probe [--dev /dev/video0] [--fb /dev/fb0|none] [--frames 30] [--fps 25]
 *         [--width 640] [--height 480] [--hold SECONDS] [--dump FILE]
 *
 * Capture: VIDIOC_QUERYCAP, ENUM_FMT, S_FMT YUYV WxH, S_PARM 1/fps, REQBUFS(4)/QUERYBUF/mmap,
 * QBUF, STREAMON, N x (poll + DQBUF + QBUF), STREAMOFF; --dump writes the last frame (raw YUYV).
 * Display: FBIOGET_VSCREENINFO/FSCREENINFO, tty0 in KD_GRAPHICS, stride/bpp-aware drawing of
 *   - the last captured frame (YUYV -> RGB, BT.601 limited range) at the top-left, cropped,
 *   - 8 reference bars (red green blue cyan magenta yellow white grey) across the bottom 3/16,
 *   - navy (0,0,96) right of the frame.
 * Every result is one machine-readable line starting with "HIL " on stdout; the host
 * (tests/hil/check.py) parses them. Exit 0 only if every step worked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <linux/kd.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int xioctl(int fd, unsigned long req, void *arg) {
    int r;
    do r = ioctl(fd, req, arg); while (r < 0 && errno == EINTR);
    return r;
}

#define FAIL(...) do { printf("HIL probe FAIL "); printf(__VA_ARGS__); \
    printf(" errno=%d (%s)\n", errno, strerror(errno)); fflush(stdout); exit(1); } while (0)

static const char *fourcc(uint32_t f, char *buf) {
    for (int i = 0; i < 4; i++) {
        char c = (char)((f >> (8 * i)) & 0xff);
        buf[i] = (c >= 32 && c < 127) ? c : '?';
    }
    buf[4] = 0;
    return buf;
}

static uint8_t clamp8(int v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

/* YUYV pixel (x,y) -> RGB, BT.601 limited range */
static void yuyv_rgb(const uint8_t *img, uint32_t bpl, int x, int y, uint8_t rgb[3]) {
    const uint8_t *p = img + (size_t)y * bpl + (size_t)(x & ~1) * 2;
    int Y = p[(x & 1) ? 2 : 0], U = p[1], V = p[3];
    int c = Y - 16, d = U - 128, e = V - 128;
    rgb[0] = clamp8((298 * c + 409 * e + 128) >> 8);
    rgb[1] = clamp8((298 * c - 100 * d - 208 * e + 128) >> 8);
    rgb[2] = clamp8((298 * c + 516 * d + 128) >> 8);
}

struct fbinfo {
    uint8_t *mem;
    struct fb_var_screeninfo v;
    struct fb_fix_screeninfo f;
};

static uint32_t chan(uint8_t c8, const struct fb_bitfield *b) {
    if (b->length == 0) return 0;
    return ((uint32_t)c8 >> (8 - (b->length > 8 ? 8 : b->length))) << b->offset;
}

static void put(struct fbinfo *fb, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || (uint32_t)x >= fb->v.xres || (uint32_t)y >= fb->v.yres) return;
    uint32_t px = chan(rgb[0], &fb->v.red) | chan(rgb[1], &fb->v.green) | chan(rgb[2], &fb->v.blue);
    uint8_t *p = fb->mem + (size_t)(y + fb->v.yoffset) * fb->f.line_length
               + (size_t)(x + fb->v.xoffset) * (fb->v.bits_per_pixel / 8);
    switch (fb->v.bits_per_pixel) {
    case 32: *(uint32_t *)p = px; break;
    case 24: p[0] = px & 0xff; p[1] = (px >> 8) & 0xff; p[2] = (px >> 16) & 0xff; break;
    case 16: *(uint16_t *)p = (uint16_t)px; break;
    }
}

static void rect(struct fbinfo *fb, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put(fb, x, y, rgb);
}

int main(int argc, char **argv) {
    const char *dev = "/dev/video0", *fbdev = "/dev/fb0", *dump = NULL;
    int nframes = 30, fps = 25, W = 640, H = 480;
    double hold = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dev")) dev = argv[i + 1];
        else if (!strcmp(argv[i], "--fb")) fbdev = argv[i + 1];
        else if (!strcmp(argv[i], "--frames")) nframes = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--fps")) fps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--width")) W = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--height")) H = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--hold")) hold = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--dump")) dump = argv[i + 1];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    char fc[5];

    int fd = open(dev, O_RDWR | O_NONBLOCK);
    if (fd < 0) FAIL("open %s", dev);
    struct v4l2_capability cap = {0};
    if (xioctl(fd, VIDIOC_QUERYCAP, &cap) < 0) FAIL("VIDIOC_QUERYCAP");
    for (char *q = (char *)cap.driver; *q; q++) if (*q == ' ') *q = '_';  /* one token each */
    for (char *q = (char *)cap.card; *q; q++) if (*q == ' ') *q = '_';
    for (char *q = (char *)cap.bus_info; *q; q++) if (*q == ' ') *q = '_';
    uint32_t caps = (cap.capabilities & V4L2_CAP_DEVICE_CAPS) ? cap.device_caps : cap.capabilities;
    printf("HIL querycap driver=%s card=%s bus=%s caps=0x%08x devcaps=0x%08x capture=%d streaming=%d\n",
           cap.driver, cap.card, cap.bus_info, cap.capabilities, cap.device_caps,
           !!(caps & V4L2_CAP_VIDEO_CAPTURE), !!(caps & V4L2_CAP_STREAMING));
    if (!(caps & V4L2_CAP_VIDEO_CAPTURE) || !(caps & V4L2_CAP_STREAMING)) FAIL("no capture/streaming");

    printf("HIL formats");
    for (struct v4l2_fmtdesc d = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE};
         xioctl(fd, VIDIOC_ENUM_FMT, &d) == 0; d.index++)
        printf(" %s", fourcc(d.pixelformat, fc));
    printf("\n");

    struct v4l2_format fmt = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE};
    fmt.fmt.pix.width = W;
    fmt.fmt.pix.height = H;
    fmt.fmt.pix.pixelformat = V4L2_PIX_FMT_YUYV;
    fmt.fmt.pix.field = V4L2_FIELD_NONE;
    if (xioctl(fd, VIDIOC_S_FMT, &fmt) < 0) FAIL("VIDIOC_S_FMT");
    struct v4l2_pix_format *pf = &fmt.fmt.pix;
    printf("HIL fmt fourcc=%s width=%u height=%u bytesperline=%u sizeimage=%u field=%u colorspace=%u\n",
           fourcc(pf->pixelformat, fc), pf->width, pf->height, pf->bytesperline, pf->sizeimage,
           pf->field, pf->colorspace);
    if (pf->pixelformat != V4L2_PIX_FMT_YUYV) FAIL("driver did not accept YUYV");

    struct v4l2_streamparm parm = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE};
    parm.parm.capture.timeperframe.numerator = 1;
    parm.parm.capture.timeperframe.denominator = fps;
    if (xioctl(fd, VIDIOC_S_PARM, &parm) < 0) FAIL("VIDIOC_S_PARM");
    memset(&parm, 0, sizeof parm);
    parm.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (xioctl(fd, VIDIOC_G_PARM, &parm) < 0) FAIL("VIDIOC_G_PARM");
    printf("HIL parm timeperframe=%u/%u\n", parm.parm.capture.timeperframe.numerator,
           parm.parm.capture.timeperframe.denominator);

    struct v4l2_requestbuffers rb = {.count = 4, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
                                     .memory = V4L2_MEMORY_MMAP};
    if (xioctl(fd, VIDIOC_REQBUFS, &rb) < 0) FAIL("VIDIOC_REQBUFS");
    if (rb.count < 2) FAIL("only %u buffers", rb.count);
    void *bufs[16]; size_t lens[16];
    unsigned nb = rb.count > 16 ? 16 : rb.count;
    for (unsigned i = 0; i < nb; i++) {
        struct v4l2_buffer b = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP, .index = i};
        if (xioctl(fd, VIDIOC_QUERYBUF, &b) < 0) FAIL("VIDIOC_QUERYBUF %u", i);
        lens[i] = b.length;
        bufs[i] = mmap(NULL, b.length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, b.m.offset);
        if (bufs[i] == MAP_FAILED) FAIL("mmap buffer %u", i);
        if (xioctl(fd, VIDIOC_QBUF, &b) < 0) FAIL("VIDIOC_QBUF %u", i);
    }
    printf("HIL reqbufs count=%u length=%zu\n", nb, lens[0]);
    int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (xioctl(fd, VIDIOC_STREAMON, &type) < 0) FAIL("VIDIOC_STREAMON");

    uint8_t *last = malloc(pf->sizeimage);
    if (!last) FAIL("malloc");
    double t_first = 0, t_last = 0;
    for (int n = 0; n < nframes; n++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 10000);
        if (r <= 0) FAIL("poll timeout/error at frame %d (r=%d)", n, r);
        struct v4l2_buffer b = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP};
        if (xioctl(fd, VIDIOC_DQBUF, &b) < 0) FAIL("VIDIOC_DQBUF frame %d", n);
        double ts = b.timestamp.tv_sec + b.timestamp.tv_usec / 1e6;
        if (n == 0) t_first = ts;
        t_last = ts;
        printf("HIL frame %d bytesused=%u seq=%u index=%u flags=0x%x ts=%.6f\n", n, b.bytesused,
               b.sequence, b.index, b.flags, ts);
        if (b.index < nb && b.bytesused <= pf->sizeimage) memcpy(last, bufs[b.index], b.bytesused);
        if (xioctl(fd, VIDIOC_QBUF, &b) < 0) FAIL("VIDIOC_QBUF frame %d", n);
    }
    if (xioctl(fd, VIDIOC_STREAMOFF, &type) < 0) FAIL("VIDIOC_STREAMOFF");
    if (nframes > 1 && t_last > t_first)
        printf("HIL rate frames=%d span=%.3f fps=%.2f\n", nframes, t_last - t_first,
               (nframes - 1) / (t_last - t_first));

    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(last, 1, pf->sizeimage, f) != pf->sizeimage || fclose(f) != 0)
            FAIL("write %s", dump);
        printf("HIL dump path=%s bytes=%u format=YUYV width=%u height=%u bytesperline=%u\n", dump,
               pf->sizeimage, pf->width, pf->height, pf->bytesperline);
    }

    /* colour of the 8 vertical bars of the last frame, sampled at mid-height */
    printf("HIL bars");
    for (int i = 0; i < 8; i++) {
        uint8_t c[3];
        yuyv_rgb(last, pf->bytesperline, (int)((2 * i + 1) * pf->width / 16), (int)pf->height / 2, c);
        printf(" %u,%u,%u", c[0], c[1], c[2]);
    }
    printf("\n");

    if (strcmp(fbdev, "none") != 0) {
        struct fbinfo fb;
        int ffd = open(fbdev, O_RDWR);
        if (ffd < 0) FAIL("open %s", fbdev);
        if (xioctl(ffd, FBIOGET_VSCREENINFO, &fb.v) < 0) FAIL("FBIOGET_VSCREENINFO");
        if (xioctl(ffd, FBIOGET_FSCREENINFO, &fb.f) < 0) FAIL("FBIOGET_FSCREENINFO");
        printf("HIL fb id=%.16s xres=%u yres=%u bpp=%u line_length=%u smem_len=%u "
               "red=%u/%u green=%u/%u blue=%u/%u\n",
               fb.f.id, fb.v.xres, fb.v.yres, fb.v.bits_per_pixel, fb.f.line_length, fb.f.smem_len,
               fb.v.red.offset, fb.v.red.length, fb.v.green.offset, fb.v.green.length,
               fb.v.blue.offset, fb.v.blue.length);
        if (fb.v.bits_per_pixel != 16 && fb.v.bits_per_pixel != 24 && fb.v.bits_per_pixel != 32)
            FAIL("unsupported bpp %u", fb.v.bits_per_pixel);
        fb.mem = mmap(NULL, fb.f.smem_len, PROT_READ | PROT_WRITE, MAP_SHARED, ffd, 0);
        if (fb.mem == MAP_FAILED) FAIL("mmap fb");
        int tty = open("/dev/tty0", O_RDWR);
        if (tty >= 0 && xioctl(tty, KDSETMODE, (void *)(long)KD_GRAPHICS) == 0)
            printf("HIL tty0 KD_GRAPHICS\n");
        else
            printf("HIL tty0 KD_GRAPHICS unavailable errno=%d\n", errno);

        int sw = fb.v.xres, sh = fb.v.yres;
        int fw = (int)pf->width < sw ? (int)pf->width : sw;
        int fh = (int)pf->height < sh * 3 / 4 ? (int)pf->height : sh * 3 / 4;
        static const uint8_t black[3] = {0, 0, 0}, navy[3] = {0, 0, 96};
        rect(&fb, 0, 0, sw, sh, black);
        for (int y = 0; y < fh; y++)
            for (int x = 0; x < fw; x++) {
                uint8_t c[3];
                yuyv_rgb(last, pf->bytesperline, x, y, c);
                put(&fb, x, y, c);
            }
        rect(&fb, fw, 0, sw, fh, navy);
        static const uint8_t ref[8][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {0, 255, 255},
                                          {255, 0, 255}, {255, 255, 0}, {255, 255, 255}, {128, 128, 128}};
        int by = sh * 13 / 16;
        for (int i = 0; i < 8; i++) rect(&fb, i * sw / 8, by, (i + 1) * sw / 8, sh, ref[i]);
        msync(fb.mem, fb.f.smem_len, MS_SYNC);
        printf("HIL draw frame=%dx%d refbars_y=%d\n", fw, fh, by);
        printf("HIL probe ok\n");
        printf("HIL screenshot probe\n");
        if (hold > 0) {
            struct timespec ts = {(time_t)hold, (long)((hold - (time_t)hold) * 1e9)};
            nanosleep(&ts, NULL);
        }
        if (tty >= 0) xioctl(tty, KDSETMODE, (void *)(long)KD_TEXT);
    } else {
        printf("HIL probe ok\n");
    }
    return 0;
}
