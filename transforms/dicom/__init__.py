"""DICOM processing: reading, pixel decoding, de-identification, times, series completeness."""
