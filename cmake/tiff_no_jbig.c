/* The dist build's JBIG codec for libtiff: none. Debian's libtiff.a is configured with JBIG, whose codec
 * (tif_jbig.o) needs jbigkit, which is GPL-2.0-or-later; linking it into the one static binary would put the whole
 * binary under the GPL. libtiff's codec table (tif_codec.o) reaches the codec only through TIFFInitJBIG, so this
 * definition, linked before libtiff.a, keeps tif_jbig.o and libjbig out of the link (cmake/static.cmake drops -ljbig;
 * .ci/dist checks that no jbg_ symbol is left). A JBIG-compressed TIFF (compression 34661, fax-style bilevel images,
 * never a microscopy format) is then refused with this message instead of being decoded, as libtiff does for a
 * codec it was built without. */
#include <tiffio.h>

int TIFFInitJBIG(TIFF* tif, int scheme);

int TIFFInitJBIG(TIFF* tif, int scheme) {
  (void)scheme;
  TIFFErrorExtR(tif, "TIFFInitJBIG", "%s: JBIG compression is not supported by this build of tabula",
                TIFFFileName(tif));
  return 0;
}
