#include "config.h"
#include "frontend/sendmail.h"

int main(int argc, char **argv)
{
	return sendmail_main(argc, argv);
}
