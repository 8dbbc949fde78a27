"""Reading labelled TSV files."""

import pytest

from ortpipe.export.data import DataError, read_labelled_tsv


def test_reads_sentences_and_labels(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text('sentence\tlabel\nit \'s a "charming" film . \t1\nbad\t0\n')
    data = read_labelled_tsv(path)
    assert data.texts == ['it \'s a "charming" film .', "bad"] and data.labels == [1, 0]
    assert len(read_labelled_tsv(path, limit=1)) == 1


@pytest.mark.parametrize("content,message", [
    ("text\tlabel\na\t1\n", "header lacks"),
    ("sentence\tlabel\na\tpositive\n", "is not an integer"),
    ("sentence\tlabel\n", "no rows"),
])
def test_malformed_files(tmp_path, content, message):
    path = tmp_path / "d.tsv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_labelled_tsv(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_labelled_tsv(tmp_path / "none.tsv")
